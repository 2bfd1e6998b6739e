"""Keyset pagination: one opaque cursor format for every list.

A cursor is the position of the last item of a page (its sort key values) as URL-safe base64 of a JSON array.
Each list decodes it with the type of its own sort key; anything else is a 400 naming the `cursor` parameter.
"""

import base64
import binascii
from typing import Any, TypeVar, overload

import msgspec

from infrahaus_domain.errors import FieldError, ValidationFailed

T = TypeVar("T")

# Longer than any position a list encodes; refused before decoding.
MAX_CURSOR_LENGTH = 512


def encode_cursor(*position: object) -> str:
    """The cursor for a page ending at `position` (the sort key values of its last item, in order)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).decode().rstrip("=")


@overload
def decode_cursor(cursor: str, position: type[T]) -> T: ...
@overload
def decode_cursor(cursor: str, position: Any) -> Any: ...
def decode_cursor(cursor: str, position: Any) -> Any:
    """The position a cursor holds, as `position` (e.g. `tuple[datetime, UUID]`); `ValidationFailed` otherwise."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=position)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationFailed([FieldError(field="cursor", message="Not a cursor from this list.")]) from None
