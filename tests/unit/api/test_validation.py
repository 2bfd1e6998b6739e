"""Every invalid field of a body at once, with messages for people and stable codes (`infrahaus_api.validation`)."""

from typing import Annotated, Any, Literal

import msgspec
import pytest

from infrahaus_api.validation import check, humanize
from infrahaus_domain.containers.schemas import ContainerCreate
from infrahaus_domain.errors import FieldError, summarize
from infrahaus_domain.nodes.schemas import NodeCreate


def errors_of(body: Any, annotation: Any) -> dict[str, tuple[str, str]]:
    return {e.field: (e.code, e.message) for e in check(body, annotation)}


def test_a_creation_body_reports_every_invalid_field() -> None:
    body = {
        "hostname": "Not_A_Hostname!",
        "vmid": 5,
        "cores": "many",
        "network": {"mode": "bridge", "ip_cidr": 7},
        "tags": ["ok", 3, "x" * 65],
        "packages": {"managers": ["apt", "brew"]},
        "scripts": [{"enabled": "yes"}],
        "surprise": True,
    }
    found = errors_of(body, ContainerCreate)
    assert found == {
        "hostname": (
            "format",
            "Use letters, digits and hyphens only, starting and ending with a letter or digit.",
        ),
        "vmid": ("too_small", "Must be at least 100."),
        "cores": ("type", "Must be a whole number."),
        "network.mode": ("not_allowed", "Must be one of: dhcp, static."),
        "network.ip_cidr": ("type", "Must be text (a string)."),
        "tags[1]": ("type", "Must be text (a string)."),
        "tags[2]": ("too_long", "Must have at most 64 characters."),
        "packages.managers[1]": ("not_allowed", "Must be one of: apt, npm, pip, custom."),
        "scripts[0].id": ("required", "This field is required."),
        "scripts[0].enabled": ("type", "Must be true or false."),
        "surprise": ("unknown_field", "Unknown field: this request has no such member."),
    }
    # Nothing a person reads mentions a regular expression or msgspec's type names.
    assert not any("regex" in m or "`" in m for _, m in found.values())


def test_what_the_decoder_accepts_is_never_reported() -> None:
    # Litestar converts bodies with strict=False: numbers in strings pass; only the real errors are listed.
    assert check({"hostname": "web-1", "vmid": "105", "onboot": "true", "cores": 2}, ContainerCreate) == []
    assert errors_of({"hostname": "web-1", "vmid": "105", "cores": 0}, ContainerCreate) == {
        "cores": ("too_small", "Must be at least 1.")
    }
    msgspec.convert({"hostname": "web-1", "vmid": "105"}, ContainerCreate, strict=False)


def test_missing_fields_and_wrong_shapes() -> None:
    assert errors_of({}, NodeCreate).keys() >= {"name", "host", "token_id", "token_secret"}
    assert all(code == "required" for code, _ in errors_of({}, NodeCreate).values())
    assert errors_of([1, 2], ContainerCreate) == {"body": ("type", "Must be an object.")}
    assert errors_of({"hostname": ""}, ContainerCreate) == {"hostname": ("too_short", "Must not be empty.")}


def test_list_lengths_and_nested_bounds() -> None:
    class Body(msgspec.Struct, forbid_unknown_fields=True):
        tags: Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=2)]
        kind: Literal["a", "b"] | None = None

    assert errors_of({"tags": [1, -1, 3], "kind": "c"}, Body) == {
        "tags": ("too_long", "Must have at most 2 items."),
        "tags[1]": ("too_small", "Must be at least 0."),
        "kind": ("not_allowed", "Must be one of: a, b."),
    }


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        ("Expected `int`, got `str` - at `$.cores`", "type", "Must be a whole number."),
        ("Expected `str | null`, got `int`", "type", "Must be text (a string)."),
        ("Expected `int` <= 512 - at `$.cores`", "too_large", "Must be at most 512."),
        ("Expected `str` matching regex '^[a-z]+$' - at `$.x`", "format", "Is not in the expected format."),
        ("Invalid UUID - at `$.node_id`", "type", "Must be a UUID."),
        ("Object missing required field `hostname`", "required", "This field is required."),
        ("Invalid enum value 'x'", "not_allowed", "Is not an allowed value."),
    ],
)
def test_msgspec_messages_are_rewritten(message: str, code: str, text: str) -> None:
    error = humanize(message)
    assert (error.code, error.message) == (code, text)
    assert "regex" not in error.message


def test_detail_summarises_the_fields() -> None:
    one = [FieldError(field="hostname", message="x")]
    two = [*one, FieldError(field="vmid", message="y"), FieldError(field="vmid", message="z")]
    assert summarize(one) == "1 field is invalid: hostname"
    assert summarize(two) == "2 fields are invalid: hostname, vmid"
