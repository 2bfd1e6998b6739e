"""Lenient decoding of Proxmox answers and Proxmox's property strings.

Proxmox is written in Perl and its JSON shows it: booleans come as 0/1 (sometimes "1"),
numbers sometimes as strings, strings sometimes as numbers (a hostname "100"), nulls where a
value is optional, and enum fields grow new values between releases. Structs in `models.py` use
plain `str` for enum-like fields; `lenient_convert` bends the remaining shapes towards the
declared field types before msgspec validates them, so one odd value never fails a whole list.
"""

import functools
import logging
import re
import types
import typing
from typing import Any, TypeVar

import msgspec

from infrahaus_proxmox.errors import ProxmoxResponseError

T = TypeVar("T")
logger = logging.getLogger("infrahaus_proxmox")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_DROP = object()  # marks a value to leave out so the field's default applies


def lenient_convert(value: Any, type_: type[T]) -> T:
    """Convert decoded JSON to `type_`, tolerating Proxmox's loose typing (see module docstring).

    Raises msgspec.ValidationError only when a required value is missing or unusable.
    """
    return msgspec.convert(_coerce(value, type_), type_, strict=False)


def decode_one(data: Any, type_: type[T], what: str) -> T:
    """`lenient_convert` for a single answer object; ProxmoxResponseError when it is unusable."""
    try:
        return lenient_convert(data, type_)
    except msgspec.ValidationError as exc:
        raise ProxmoxResponseError(f"unexpected {what} answer: {exc}") from exc


def decode_list(data: Any, type_: type[T], what: str) -> list[T]:
    """Convert each list entry leniently; an entry that still does not fit is skipped and logged."""
    if not isinstance(data, list):
        raise ProxmoxResponseError(f"unexpected {what} answer: expected a list")
    items: list[T] = []
    for entry in data:
        try:
            items.append(lenient_convert(entry, type_))
        except msgspec.ValidationError as exc:
            logger.warning("skipping unusable %s entry: %s", what, exc)
    return items


@functools.cache
def _struct_fields(struct: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    return {field.encode_name: field for field in msgspec.structs.fields(struct)}


def _allows_none(type_: Any) -> bool:
    return typing.get_origin(type_) in (typing.Union, types.UnionType) and type(None) in typing.get_args(type_)


def _coerce(value: Any, type_: Any) -> Any:
    origin = typing.get_origin(type_)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        arms = [arm for arm in typing.get_args(type_) if arm is not type(None)]
        return _coerce(value, arms[0]) if len(arms) == 1 else value
    if origin is list:
        (item,) = typing.get_args(type_)
        if isinstance(value, str) and item is str:
            return [part for part in re.split(r"[,;\s]+", value) if part]
        if isinstance(value, list):
            return [_coerce(element, item) for element in value]
        return value
    if origin is dict:
        _key, item = typing.get_args(type_)
        if isinstance(value, dict):
            return {str(k): _coerce(v, item) for k, v in value.items() if v is not None or _allows_none(item)}
        return value
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        return _coerce_struct(value, type_)
    if type_ is str:
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int | float):
            return str(value)
        return value
    if type_ is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            return True if lowered in _TRUE else False if lowered in _FALSE else value
        if isinstance(value, int | float):
            return bool(value)
        return value
    if type_ is int:
        return _coerce_number(value, int)
    if type_ is float:
        return _coerce_number(value, float)
    return value


def _coerce_struct(value: Any, struct: type[msgspec.Struct]) -> Any:
    if not isinstance(value, dict):
        return value
    fields = _struct_fields(struct)
    out: dict[str, Any] = {}
    for key, raw in value.items():
        field = fields.get(key)
        if field is None:
            continue
        if raw is None and not _allows_none(field.type):
            if field.required:
                out[key] = raw
            continue
        coerced = _coerce(raw, field.type)
        if coerced is _DROP and not field.required:
            continue
        out[key] = raw if coerced is _DROP else coerced
    return out


def _coerce_number(value: Any, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool):
        return kind(value)
    if isinstance(value, float) and kind is int:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _DROP
        try:
            return kind(float(text)) if kind is int else float(text)
        except ValueError:
            return value
    return value


def parse_property_string(value: str, default_key: str | None = None) -> dict[str, str]:
    """Split a Proxmox property string (``name=eth0,bridge=vmbr0``) into a dict.

    An item without ``=`` belongs to `default_key` (``local-lvm:vm-100-disk-0,size=8G`` ->
    ``volume``); without a default key such items map to "1".
    """
    result: dict[str, str] = {}
    for item in value.split(","):
        part = item.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        if sep:
            result[key.strip()] = val.strip()
        elif default_key is not None and default_key not in result:
            result[default_key] = part
        else:
            result[part] = "1"
    return result


def parse_bool(value: str | None) -> bool:
    """Proxmox's boolean strings: "1"/"0", also "yes"/"no", "on"/"off", "true"/"false"."""
    return value is not None and value.strip().lower() in _TRUE


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_disk_size(value: str) -> int | None:
    """Bytes in a Proxmox disk size such as ``8G``, ``512M`` or ``1.5T``; None when unparseable."""
    match = _SIZE_RE.match(value.strip())
    if match is None:
        return None
    return int(float(match[1]) * _UNITS[match[2].upper()])


def split_tags(value: str | None) -> list[str]:
    """Proxmox tags: stored ";"-separated, accepted with ",", ";" or spaces."""
    return [tag for tag in re.split(r"[;,\s]+", value or "") if tag]
