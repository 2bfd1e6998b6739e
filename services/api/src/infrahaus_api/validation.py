"""Every invalid field of a request at once, in words written for people.

msgspec stops at the first error while it decodes a body, and its messages speak of types and regular expressions
("Expected `str` matching regex '^[A-Za-z0-9]…'"). A body that does not convert is therefore checked again here,
field by field along its struct: each leaf value is converted on its own with the same rules Litestar uses
(`strict=False`), so this finds exactly what the decoder refuses, but all of it. Messages come from the constraint
that failed; a pattern's message comes from its field (`msgspec.Meta(extra={"message": ...})`), never from the
pattern itself.
"""

import re
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from infrahaus_domain.errors import FieldError, FieldErrorCode

_NoneType = type(None)
_SEQUENCES = (list, set, frozenset)

_TYPE_WORDS = {
    "int": "Must be a whole number.",
    "float": "Must be a number.",
    "str": "Must be text (a string).",
    "bool": "Must be true or false.",
    "object": "Must be an object.",
    "array": "Must be a list.",
    "null": "Must be null.",
    "uuid": "Must be a UUID.",
    "datetime": "Must be a date and time (RFC 3339, with a time zone).",
    "date": "Must be a date (YYYY-MM-DD).",
    "bytes": "Must be base64-encoded bytes.",
}
_EXPECTED = re.compile(r"Expected `(?P<type>[^`]+)`(?P<rest>.*)")
_BOUND = re.compile(r"^ (?P<op>>=|<=|>|<) (?P<value>-?[0-9.e+]+)$")
_LENGTH = re.compile(r"^ of length (?P<op>>=|<=) (?P<value>[0-9]+)$")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def check(value: Any, annotation: Any, path: str = "") -> list[FieldError]:
    """Every error of `value` against `annotation` (a msgspec struct, or any type msgspec converts), in field order.

    `path` is where `value` sits in the body (`""` for the body itself); errors name their field with dots for
    members and brackets for list items (`scripts[0].id`), or `body` for the body as a whole.
    """
    base, metas = _unwrap(annotation)
    origin = get_origin(base)
    if base is Any:
        return []
    if _is_struct(base):
        return _check_struct(value, base, path)
    if origin is Union or origin is types.UnionType:
        members = get_args(base)
        if value is None and _NoneType in members:
            return []
        others = [m for m in members if m is not _NoneType]
        if len(others) == 1 and not metas:
            return check(value, others[0], path)
        return _leaf(value, annotation, path)
    if origin in _SEQUENCES and isinstance(value, list):
        item = get_args(base)[0] if get_args(base) else Any
        errors = _leaf(value, Annotated[(list[Any], *metas)] if metas else list[Any], path)
        for index, member in enumerate(value):
            errors.extend(check(member, item, f"{path}[{index}]"))
        return errors
    return _leaf(value, annotation, path)


def _check_struct(value: Any, struct: type[msgspec.Struct], path: str) -> list[FieldError]:
    if not isinstance(value, dict):
        return [_error(path, "type", _TYPE_WORDS["object"])]
    config = struct.__struct_config__
    errors: list[FieldError] = []
    names = {config.tag_field} if config.tag_field else set()
    for field in msgspec.structs.fields(struct):
        names.add(field.encode_name)
        where = _join(path, field.encode_name)
        if field.encode_name not in value:
            if field.required:
                errors.append(_error(where, "required", "This field is required."))
            continue
        errors.extend(check(value[field.encode_name], field.type, where))
    if config.forbid_unknown_fields:
        errors.extend(
            _error(_join(path, str(key)), "unknown_field", "Unknown field: this request has no such member.")
            for key in value
            if key not in names
        )
    return errors


def _leaf(value: Any, annotation: Any, path: str) -> list[FieldError]:
    try:
        msgspec.convert(value, annotation, strict=False)
    except msgspec.ValidationError as exc:
        return [humanize(str(exc), annotation, path)]
    return []


def humanize(message: str, annotation: Any = None, path: str = "") -> FieldError:
    """A msgspec validation message as a field error a person can act on.

    `annotation` (the type that refused the value) supplies what the message lacks: the allowed values of an
    enum, the sentence describing a pattern. The path msgspec appends (`- at $.cores`) extends `path`.
    """
    if found := _PATH.search(message):
        # msgspec writes `$.network.ip_cidr` and `$.scripts[0].id`; ours drops the `$`.
        path += found.group("path")
        message = message[: found.start()]
    if found := _MISSING.search(message):
        return _error(_join(path, found.group("name")), "required", "This field is required.")
    if found := _UNKNOWN.search(message):
        return _error(
            _join(path, found.group("name")), "unknown_field", "Unknown field: this request has no such member."
        )
    code, text = _describe(message, annotation)
    return _error(path, code, text)


def _describe(message: str, annotation: Any) -> tuple[FieldErrorCode, str]:
    if message.startswith("Invalid enum value"):
        allowed = _allowed(annotation)
        return "not_allowed", f"Must be one of: {', '.join(allowed)}." if allowed else "Is not an allowed value."
    if message.startswith("Invalid UUID"):
        return "type", _TYPE_WORDS["uuid"]
    if message.startswith("Invalid RFC3339"):
        return "type", _TYPE_WORDS["datetime" if "datetime" in message else "date"]
    if message.startswith("Invalid base64"):
        return "type", _TYPE_WORDS["bytes"]
    found = _EXPECTED.match(message)
    if found is None:
        # Not a shape this module knows: msgspec's own words, unless they would show a pattern.
        return "invalid", "Is invalid." if "regex" in message else message
    expected, rest = found.group("type"), found.group("rest")
    if rest.startswith(" matching regex"):
        return "format", _pattern_message(annotation) or "Is not in the expected format."
    if rest.startswith(", got"):
        return "type", _type_words(expected)
    if bound := _BOUND.match(rest):
        op, limit = bound.group("op"), bound.group("value")
        if op == ">=":
            return "too_small", f"Must be at least {limit}."
        if op == ">":
            return "too_small", f"Must be greater than {limit}."
        if op == "<=":
            return "too_large", f"Must be at most {limit}."
        return "too_large", f"Must be less than {limit}."
    if length := _LENGTH.match(rest):
        op, limit = length.group("op"), int(length.group("value"))
        unit = "item" if expected in {"array", "object"} else "character"
        units = unit if limit == 1 else f"{unit}s"
        if op == ">=":
            if limit == 1:
                return "too_short", "Must not be empty."
            return "too_short", f"Must have at least {limit} {units}."
        return "too_long", f"Must have at most {limit} {units}."
    return "invalid", "Is invalid."


def _type_words(expected: str) -> str:
    # "str | null" -> the first kind that is not null.
    kinds = [kind.strip() for kind in expected.split("|") if kind.strip() != "null"]
    return _TYPE_WORDS.get(kinds[0] if kinds else "null", f"Must be of type {expected}.")


def _allowed(annotation: Any) -> list[str]:
    values: list[str] = []
    for part in _parts(annotation):
        if get_origin(part) is Literal:
            values.extend(str(v) for v in get_args(part) if v is not None)
        elif isinstance(part, type) and hasattr(part, "__members__"):
            values.extend(str(m.value) for m in part.__members__.values())
    return values


def _pattern_message(annotation: Any) -> str | None:
    for part in _parts(annotation, with_metas=True):
        if isinstance(part, msgspec.Meta) and part.pattern is not None and part.extra:
            message = part.extra.get("message")
            if isinstance(message, str):
                return message
    return None


def _parts(annotation: Any, *, with_metas: bool = False) -> Iterator[Any]:
    """The annotation, the members of its unions and what `Annotated` wraps (and, if asked, its metadata)."""
    base, metas = _unwrap(annotation)
    if with_metas:
        yield from metas
    origin = get_origin(base)
    if origin is Union or origin is types.UnionType:
        for member in get_args(base):
            yield from _parts(member, with_metas=with_metas)
        return
    yield base


def _unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    metas: tuple[Any, ...] = ()
    while get_origin(annotation) is Annotated:
        args = get_args(annotation)
        annotation, metas = args[0], metas + tuple(args[1:])
    return annotation, metas


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _error(path: str, code: FieldErrorCode, message: str) -> FieldError:
    return FieldError(field=path.removeprefix(".") or "body", message=message, code=code)
