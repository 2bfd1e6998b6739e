"""The ownership marker: written in Proxmox's normal form, read back whatever Proxmox did to it, judged strictly."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrahaus_domain.containers.marker import (
    description_line,
    description_with_marker,
    has_marker_line,
    is_reserved_tag,
    marker_tags,
    ownership,
    read_marker,
    short_tag,
    tags_with_marker,
)

ID = uuid.UUID("01a2426d-d701-7018-bc17-a6c19832a7de")
OTHER = uuid.UUID("01a2426d-d701-7018-bc17-000000000001")


def proxmox_tags(tags: list[str]) -> str:
    """What Proxmox stores (get_unique_tags): lower-cased, unique, sorted, joined with `;`."""
    return ";".join(sorted({t.lower() for t in tags}))


def proxmox_description(text: str) -> str:
    """What Proxmox reads back: every line with a trailing newline."""
    return "".join(f"{line}\n" for line in text.split("\n"))


def test_the_marker_names_the_container() -> None:
    assert marker_tags(ID) == ["infrahaus", "ih-a6c19832a7de"]
    assert short_tag(ID) == "ih-a6c19832a7de"
    assert description_line(ID) == f"infrahaus-container: {ID}"


def test_written_and_read_back_through_proxmox_it_is_ours() -> None:
    tags = proxmox_tags(tags_with_marker(ID, ["Web", "prod"]))
    description = proxmox_description(description_with_marker(ID, "My app\n\nnotes"))
    assert description.startswith(f"infrahaus-container: {ID}\nMy app\n\nnotes\n")
    assert ownership(read_marker(tags, description), ID) == "ours"
    assert ownership(read_marker(tags, None), ID) == "ours"  # the tags alone say it
    assert ownership(read_marker(None, description), ID) == "ours"  # the description alone too


@pytest.mark.parametrize(
    ("tags", "description", "expected"),
    [
        (None, None, "absent"),
        ("infrahaus", "a guest of somebody\n", "absent"),  # the bare tag names nobody
        ("web;prod", None, "absent"),
        (f"infrahaus;{short_tag(OTHER)}", None, "other"),
        (None, f"{description_line(OTHER)}\n", "other"),
        # A copied or edited marker naming two containers proves nothing.
        (f"infrahaus;{short_tag(ID)}", f"{description_line(OTHER)}\n", "other"),
        (f"infrahaus;{short_tag(ID)};{short_tag(OTHER)}", None, "other"),
        (f"infrahaus,{short_tag(ID).upper()} web", None, "ours"),  # any separator, any case
    ],
)
def test_judgement(tags: str | None, description: str | None, expected: str) -> None:
    assert ownership(read_marker(tags, description), ID) == expected


def test_a_marker_in_user_input_never_survives_into_the_written_marker() -> None:
    written = tags_with_marker(ID, ["infrahaus", short_tag(OTHER), "web", "web"])
    assert written == ["infrahaus", short_tag(ID), "web"]
    assert description_with_marker(ID, f"{description_line(OTHER)}\nkept") == f"{description_line(ID)}\nkept"
    assert is_reserved_tag("IH-abc")
    assert is_reserved_tag("infrahaus")
    assert not is_reserved_tag("infra")
    assert has_marker_line(f"x\n  {description_line(OTHER)}  \ny")
    assert not has_marker_line("infrahaus-container is a word here")


@given(user=st.lists(st.from_regex(r"[a-z0-9_][a-z0-9_+.-]{0,20}", fullmatch=True), max_size=5), ct=st.uuids())
def test_any_user_tags_keep_the_marker_ours(user: list[str], ct: uuid.UUID) -> None:
    tags = proxmox_tags(tags_with_marker(ct, user))
    assert ownership(read_marker(tags, proxmox_description(description_with_marker(ct, None))), ct) == "ours"
