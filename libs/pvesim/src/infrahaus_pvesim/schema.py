"""Request validation against the Proxmox VE API schema (`pve-openapi.json`, vendored gzipped).

Checks what PVE's own `PVE::JSONSchema` checks for a request: the path exists for the method,
parameter names (indexed ones such as ``net[n]`` accept ``net0`` .. ``net9``), required
parameters, types (booleans are 0/1 on the wire), enums, minimum/maximum, maxLength, regex
patterns, a set of named formats (node names, storage ids, DNS names, IPs, ...) and property
strings (``name=eth0,bridge=vmbr0,ip=dhcp``) key by key. Messages follow PVE's wording.

The simulator answers violations with Proxmox's 400 shape; the client's contract tests call
`validate_request` on every request the client sends.
"""

import functools
import gzip
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

API_PREFIX = "/api2/json"
# PVE accepts indexed options up to these counts (net0..net31 on LXC in PVE 8; mp0..mp255; dev0..dev255).
_INDEX_LIMIT = 256


@dataclass(frozen=True)
class SchemaViolation:
    """One parameter that PVE would reject, with PVE's message for it."""

    field: str
    message: str


@dataclass(frozen=True)
class Operation:
    """A method on a templated path, with its parameters by name (indexed names keep ``[n]``)."""

    method: str
    template: str
    params: Mapping[str, Mapping[str, Any]]
    required: frozenset[str]


@dataclass(frozen=True)
class RouteMatch:
    operation: Operation
    path_params: dict[str, str]


class UnknownPathError(LookupError):
    """No path in the schema matches (PVE answers 501 "Method 'GET /x' not implemented")."""


@functools.cache
def load_schema() -> dict[str, Any]:
    """The vendored PVE OpenAPI document (parsed once)."""
    blob = resources.files(__package__).joinpath("pve-openapi.json.gz").read_bytes()
    data: dict[str, Any] = json.loads(gzip.decompress(blob))
    return data


@functools.cache
def _operations() -> dict[str, tuple[re.Pattern[str], dict[str, Operation]]]:
    table: dict[str, tuple[re.Pattern[str], dict[str, Operation]]] = {}
    for template, methods in load_schema()["paths"].items():
        regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")
        ops: dict[str, Operation] = {}
        for method, op in methods.items():
            params = {p["name"]: p["schema"] for p in op.get("parameters", [])}
            required = frozenset(p["name"] for p in op.get("parameters", []) if p.get("required"))
            ops[method.upper()] = Operation(method.upper(), template, params, required)
        table[template] = (regex, ops)
    return table


def match_path(method: str, path: str) -> RouteMatch:
    """Find the schema operation for a concrete path (with or without the ``/api2/json`` prefix).

    Literal segments win over templated ones, as in PVE's router. Raises `UnknownPathError`.
    """
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX) :]
    path = path.rstrip("/") or "/"
    best: tuple[int, RouteMatch] | None = None
    for template, (regex, ops) in _operations().items():
        found = regex.match(path)
        if found is None or method.upper() not in ops:
            continue
        literal = template.count("/") - template.count("{")
        if best is None or literal > best[0]:
            best = (literal, RouteMatch(ops[method.upper()], dict(found.groupdict())))
    if best is None:
        raise UnknownPathError(f"Method '{method.upper()} {path}' not implemented")
    return best[1]


def _param_schema(op: Operation, name: str) -> Mapping[str, Any] | None:
    if name in op.params:
        return op.params[name]
    indexed = re.fullmatch(r"([a-z][a-z_]*?)(\d+)", name)
    if indexed and int(indexed[2]) < _INDEX_LIMIT:
        return op.params.get(f"{indexed[1]}[n]")
    return None


def validate_request(
    method: str, path: str, params: Mapping[str, str | Sequence[str]] | None = None
) -> list[SchemaViolation]:
    """Check one request against the schema and return every violation (empty list = valid).

    ``params`` are the query or form parameters as sent on the wire (strings, ``"0"``/``"1"`` for
    booleans). Path parameters are taken from ``path`` itself. An unknown path yields one
    violation with field ``"path"``.
    """
    try:
        route = match_path(method, path)
    except UnknownPathError as exc:
        return [SchemaViolation("path", str(exc))]
    return validate_params(route, params or {})


def validate_params(route: RouteMatch, params: Mapping[str, str | Sequence[str]]) -> list[SchemaViolation]:
    """Validate path and body/query parameters of a request already matched to ``route``."""
    op = route.operation
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    for name, raw in params.items():
        if isinstance(raw, str):
            values[name] = raw
        elif len(raw) == 1:
            values[name] = raw[0]
        else:
            errors[name] = "duplicate parameter (not an array)"
    for name, value in route.path_params.items():
        values[name] = value
    for name, value in values.items():
        if name in errors:
            continue
        schema = _param_schema(op, name)
        if schema is None:
            errors[name] = _NOT_DEFINED
            continue
        message = check_value(value, schema)
        if message is not None:
            errors[name] = message
    for name in sorted(op.required):
        if name not in values and name not in errors:
            errors[name] = "property is missing and it is not optional"
    return [SchemaViolation(field, message) for field, message in sorted(errors.items())]


_NOT_DEFINED = "property is not defined in schema and the schema does not allow additional properties"
_INT_RE = re.compile(r"^-?\d+$")
_NUM_RE = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def _perl_regex(pattern: str) -> re.Pattern[str]:
    # PVE patterns are Perl regexes; `(?^:..)` is Perl's "default flags" group.
    return re.compile(pattern.replace("(?^i:", "(?i:").replace("(?^:", "(?:"))


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return _perl_regex(pattern)


def check_value(value: str, schema: Mapping[str, Any]) -> str | None:
    """PVE's message for one value that does not satisfy ``schema``, or None when it does."""
    kind = schema.get("type", "string")
    if kind == "boolean":
        if value not in ("0", "1"):
            return f"type check ('boolean') failed - got '{value}'"
        return None
    if kind == "integer":
        if not _INT_RE.match(value):
            return f"type check ('integer') failed - got '{value}'"
        number: float = int(value)
    elif kind == "number":
        if not _NUM_RE.match(value):
            return f"type check ('number') failed - got '{value}'"
        number = float(value)
    else:
        number = 0.0
    if kind in ("integer", "number"):
        # The schema file sometimes carries bounds as strings.
        minimum = _as_number(schema.get("minimum"))
        maximum = _as_number(schema.get("maximum"))
        if minimum is not None and number < minimum:
            return f"value must have a minimum value of {_fmt(minimum)}"
        if maximum is not None and number > maximum:
            return f"value must have a maximum value of {_fmt(maximum)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"value '{value}' does not have a value in the enumeration '{', '.join(schema['enum'])}'"
    max_length = _as_number(schema.get("maxLength"))
    if max_length is not None and len(value) > max_length:
        return f"value may only be {_fmt(max_length)} characters long"
    # pve-common JSONSchema.pm check_prop: the format first ("invalid format - <the format's own message>"), then
    # the pattern.
    fmt = schema.get("format")
    if isinstance(fmt, dict):
        if (problem := _check_property_string(value, fmt)) is not None:
            return problem
    elif isinstance(fmt, str) and (problem := _check_format(fmt, value)) is not None:
        return f"invalid format - {problem}"
    if "pattern" in schema and not _compiled(schema["pattern"]).fullmatch(value):
        return "value does not match the regex pattern"
    return None


def _as_number(raw: object) -> float | None:
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str) and _NUM_RE.match(raw):
        return float(raw)
    return None


def _fmt(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


def parse_property_string(value: str, fmt: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Split ``key=value,key=value`` (a bare first value goes to the ``default_key``). Raises ValueError."""
    default_key = next((key for key, sub in fmt.items() if sub.get("default_key")), None)
    result: dict[str, str] = {}
    for part in value.split(","):
        if part == "":
            continue
        if "=" in part:
            key, _, item = part.partition("=")
        elif default_key is not None and default_key not in result:
            key, item = default_key, part
        else:
            raise ValueError(f"value without key, but schema does not define a default key: '{part}'")
        if key in result:
            raise ValueError(f"duplicate key in comma-separated list property: {key}")
        result[key] = item
    return result


def _check_property_string(value: str, fmt: Mapping[str, Mapping[str, Any]]) -> str | None:
    try:
        parsed = parse_property_string(value, fmt)
    except ValueError as exc:
        return f"invalid format - {exc}"
    for key, item in parsed.items():
        sub = fmt.get(key)
        if sub is None:
            return f"invalid format - {key}: {_NOT_DEFINED}"
        message = check_value(item, sub)
        if message is not None:
            return f"invalid format - {key}: {message}"
    for key, sub in fmt.items():
        if not sub.get("optional") and key not in parsed and "alias" not in sub:
            return f"invalid format - {key}: property is missing and it is not optional"
    return None


_NODE_RE = re.compile(r"^(?i:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)$")
_STORAGE_ID_RE = re.compile(r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$")
_CONFIG_ID_RE = re.compile(r"^(?i:[a-z][a-z0-9_-]+)$")
_DNS_LABEL = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?)"
_DNS_RE = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
_MAC_RE = re.compile(r"^[a-fA-F0-9]{2}(?::[a-fA-F0-9]{2}){5}$")
_USERID_RE = re.compile(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+$")
_REALM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_TAG_RE = re.compile(r"^(?i:[a-z0-9_][a-z0-9_\-+.]*)$")
_DISK_SIZE_RE = re.compile(r"^\d+(?:\.\d+)?[KMGT]?$")
_CONTENT_TYPES = {"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none"}


def _is_ip(value: str, version: int | None = None, *, cidr: bool = False) -> bool:
    try:
        ip = ipaddress.ip_interface(value) if cidr else ipaddress.ip_address(value)
    except ValueError:
        return False
    if cidr and "/" not in value:
        return False
    return version is None or ip.version == version


def _check_format(fmt: str, value: str) -> str | None:
    ok: bool
    if fmt == "pve-node":
        ok, what = bool(_NODE_RE.match(value)), "node name"
    elif fmt in ("pve-storage-id", "pve-poolid"):
        ok, what = bool(_STORAGE_ID_RE.match(value)), "storage ID" if fmt == "pve-storage-id" else "pool ID"
    elif fmt == "pve-configid":
        ok, what = bool(_CONFIG_ID_RE.match(value)), "configuration ID"
    elif fmt == "pve-configid-list":
        ok, what = all(_CONFIG_ID_RE.match(x) for x in re.split(r"[,;\s]+", value.strip()) if x), "configuration ID"
    elif fmt == "dns-name":
        ok, what = bool(_DNS_RE.match(value)), "DNS name"
    elif fmt == "dns-name-list":
        ok, what = all(_DNS_RE.match(x) for x in re.split(r"[,;\s]+", value.strip()) if x), "DNS name"
    elif fmt == "pve-volume-id":
        storage, sep, rest = value.partition(":")
        ok, what = bool(sep and rest and _STORAGE_ID_RE.match(storage)), "volume ID"
    elif fmt == "pve-lxc-mp-string":
        storage, sep, rest = value.partition(":")
        ok, what = (value.startswith("/") or bool(sep and rest and _STORAGE_ID_RE.match(storage))), "volume"
    elif fmt in ("ip", "address"):
        ok, what = _is_ip(value), "IP address"
    elif fmt in ("ipv4", "ipv6"):
        ok, what = _is_ip(value, int(fmt[-1])), f"IPv{fmt[-1]} address"
    elif fmt == "pve-ipv4-config":
        ok, what = value in ("dhcp", "manual") or _is_ip(value, 4, cidr=True), "IPv4 config"
    elif fmt == "pve-ipv6-config":
        ok, what = value in ("auto", "dhcp", "manual") or _is_ip(value, 6, cidr=True), "IPv6 config"
    elif fmt == "mac-addr":
        ok, what = bool(_MAC_RE.match(value)) and int(value[:2], 16) & 1 == 0, "MAC address"
    elif fmt == "pve-userid":
        ok, what = bool(_USERID_RE.match(value)), "user ID"
    elif fmt == "pve-realm":
        ok, what = bool(_REALM_RE.match(value)), "realm name"
    elif fmt == "pve-tag-list":
        if not all(_TAG_RE.match(x) for x in re.split(r"[,;\s]+", value.strip()) if x):
            return "invalid characters in tag"  # JSONSchema.pm pve_verify_tag
        return None
    elif fmt == "disk-size":
        ok, what = bool(_DISK_SIZE_RE.match(value)), "disk size"
    elif fmt in ("pve-storage-content", "pve-storage-content-list"):
        items = value.split(",") if fmt.endswith("-list") else [value]
        ok, what = all(x in _CONTENT_TYPES for x in items), "content type"
    elif fmt == "pve-vmid":
        ok, what = bool(_INT_RE.match(value)) and 100 <= int(value) <= 999_999_999, "VM ID"
    else:
        # Formats PVE checks with code we do not model (calendar events, firewall specs, ...).
        return None
    return None if ok else f"value does not look like a valid {what}"
