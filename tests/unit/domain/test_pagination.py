"""The one cursor codec every list uses."""

import uuid
from datetime import UTC, datetime

import pytest

from infrahaus_domain.errors import ValidationFailed
from infrahaus_domain.pagination import MAX_CURSOR_LENGTH, decode_cursor, encode_cursor
from infrahaus_domain.templates.service import NameCursor

# Fixed, so that every xdist worker collects the same parameters.
ROW_ID = uuid.UUID("01930000-0000-7000-8000-000000000001")


def test_positions_round_trip_with_their_types() -> None:
    created, ident = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(created, ident), tuple[datetime, uuid.UUID]) == (created, ident)
    assert decode_cursor(encode_cursor(42), tuple[int]) == (42,)
    assert decode_cursor(encode_cursor("web", ident), NameCursor) == ("web", ident)
    # Opaque and URL-safe: no padding, nothing a query string must escape.
    assert set(encode_cursor("a/b+c", ident)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    ("cursor", "position"),
    [
        ("", tuple[int]),
        ("not base64!", tuple[int]),
        (encode_cursor("x"), tuple[int]),  # another list's cursor
        (encode_cursor(1, 2), tuple[uuid.UUID]),
        (encode_cursor("a\x00b", ROW_ID), NameCursor),  # a name PostgreSQL would refuse
        ("A" * (MAX_CURSOR_LENGTH + 1), tuple[int]),
    ],
    ids=["empty", "not-base64", "another-list", "wrong-types", "nul-in-name", "too-long"],
)
def test_anything_else_is_a_validation_error_on_the_cursor(cursor: str, position: object) -> None:
    with pytest.raises(ValidationFailed) as exc:
        decode_cursor(cursor, position)
    assert [e.field for e in exc.value.errors] == ["cursor"]
