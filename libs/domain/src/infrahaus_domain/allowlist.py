"""Allow-lists for every string that may reach a shell inside a container or on a node.

The one module both sides use: the API refuses a value here with a 422 before anything is stored, and the
worker checks the same value again with the same function before it reaches a command (it never trusts a stored
value blindly), so whatever the API accepts the worker runs. Every pattern matches the whole string
(`fullmatch`): a trailing newline is refused like any other character outside the list.

Each ``validate_*`` function returns the accepted (possibly normalised) value or raises
`UnsafeValueError` with a message fit for a 422 field error. Names are restricted to characters
that `shlex.quote` leaves untouched, so an accepted name can never change meaning in a shell;
callers still pass argv lists and quote every value. Version constraints may carry operator
characters (``>=``, ``~``, ``*``) and therefore must always be quoted by the caller.
"""

import posixpath
import re
from collections.abc import Callable
from typing import Final, Literal, TypeVar, get_args

from infrahaus_domain.errors import FieldError, ValidationFailed

PackageManager = Literal["apt", "npm", "pip", "custom"]
FilePolicy = Literal["replace", "default", "backup"]

PACKAGE_MANAGERS: Final[tuple[str, ...]] = get_args(PackageManager)
FILE_POLICIES: Final[tuple[str, ...]] = get_args(FilePolicy)

MAX_CONTENT_BYTES: Final = 1024 * 1024
# npm's own limit for a (scoped) name; versions and constraints are kept short.
MAX_PACKAGE_NAME: Final = 214
MAX_VERSION: Final = 128
MAX_DESCRIPTION_CHARS: Final = 2000


T = TypeVar("T")


class UnsafeValueError(ValueError):
    """A value outside its allow-list; ``str(exc)`` is the user-facing reason."""


class FieldErrors:
    """Collects field errors so that one 422 reports every problem at once.

    ``errors.check("files[0].target_path", validate_target_path, value)`` records the message under the field
    and returns the value (normalised when valid); ``errors.raise_if_any()`` raises `ValidationFailed`.
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field=field, message=message))

    def check(self, field: str, validate: Callable[[T], T], value: T) -> T:
        try:
            return validate(value)
        except UnsafeValueError as exc:
            self.add(field, str(exc))
            return value

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Dotfiles (".bashrc") are common targets, so a leading dot is allowed; "." and ".." are not.
_FILE_NAME = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,127}")
_PATH_CHARS = re.compile(r"[A-Za-z0-9._/@+-]+")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,98}[A-Za-z0-9._-])?")
# Proxmox's pve-tag format, lowercased.
_TAG = re.compile(r"[a-z0-9_][a-z0-9_.+-]{0,63}")
# systemd unit names without escapes; a leading "-" could be read as an option.
_UNIT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9:_.@-]{0,254}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_STORAGE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,62}[A-Za-z0-9]")
_BRIDGE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,14}")
_OS_TEMPLATE = re.compile(r"(?:[A-Za-z][A-Za-z0-9._-]*:)?(?:vztmpl/)?[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")
_MODE = re.compile(r"0?[0-7]{3}")

_PACKAGE_NAMES: Final[dict[str, re.Pattern[str]]] = {
    # Debian policy: lowercase alphanumerics, + - ., at least two characters; optional :arch.
    "apt": re.compile(r"[a-z0-9][a-z0-9+.-]{1,127}(?::[a-z0-9-]{1,32})?"),
    # PEP 508 distribution names (extras are not supported).
    "pip": re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"),
    # npm names, optionally scoped; uppercase and "~" are not allowed for new packages.
    "npm": re.compile(r"(?:@[a-z0-9][a-z0-9._-]{0,100}/)?[a-z0-9][a-z0-9._-]{0,213}"),
    "custom": re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"),
}
_PIP_CLAUSE = r"(?:===|==|!=|~=|>=|<=|<|>)[0-9A-Za-z.*+!_-]{1,64}"
_PACKAGE_VERSIONS: Final[dict[str, re.Pattern[str]]] = {
    # Debian versions ([epoch:]upstream[-revision]); apt accepts a trailing "*" glob in pins.
    "apt": re.compile(r"[0-9A-Za-z][0-9A-Za-z.+~:*-]{0,63}"),
    "pip": re.compile(rf"{_PIP_CLAUSE}(?:,{_PIP_CLAUSE}){{0,7}}"),
    # A semver version, range or dist-tag without spaces or "||".
    "npm": re.compile(r"[0-9A-Za-z^~<>=*][0-9A-Za-z^~<>=.*+-]{0,63}"),
    "custom": re.compile(r"[0-9A-Za-z][0-9A-Za-z.+~:_-]{0,63}"),
}
_NAME_RULES: Final[dict[str, str]] = {
    "apt": "Debian package names use a-z 0-9 + . - (at least two characters)",
    "pip": "PEP 508 names use A-Z a-z 0-9 . _ - and start and end alphanumeric",
    "npm": "npm names use a-z 0-9 . _ -, optionally scoped as @scope/name",
    "custom": "use A-Z a-z 0-9 . _ + -",
}
_PIP_BARE_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.*+!_-]{0,63}")


def whole(body: str) -> str:
    """A msgspec (and OpenAPI) ``pattern`` matching the whole string: msgspec matches with ``re.search``, where
    ``$`` also matches before a trailing newline; ``(?!\\n)`` refuses that newline and reads the same in the
    ECMAScript dialect of the OpenAPI document."""
    return rf"^(?:{body})$(?!\n)"


def _match(pattern: re.Pattern[str], value: str, what: str, rule: str, max_len: int = 255) -> str:
    if not isinstance(value, str) or len(value) > max_len or not pattern.fullmatch(value):
        raise UnsafeValueError(f"invalid {what}: {rule}")
    return value


def validate_script_name(value: str) -> str:
    """A script name: letters, digits, ``.``, ``_``, ``-``; starts alphanumeric; at most 64 characters."""
    return _match(_SCRIPT_NAME, value, "script name", "use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")


def validate_file_name(value: str) -> str:
    """A file name (no directories): letters, digits, ``.``, ``_``, ``-``; not ``.`` or ``..``."""
    if value in {".", ".."}:
        raise UnsafeValueError("invalid file name: '.' and '..' are not file names")
    return _match(_FILE_NAME, value, "file name", "use 1-128 of A-Z a-z 0-9 . _ - and no '/'")


def validate_target_path(value: str) -> str:
    """An absolute, normalised directory path without ``..``, ``.``, ``//`` or a trailing slash."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise UnsafeValueError("invalid target path: must be absolute (start with '/')")
    if len(value) > 255:
        raise UnsafeValueError("invalid target path: at most 255 characters")
    if not _PATH_CHARS.fullmatch(value):
        raise UnsafeValueError("invalid target path: use only A-Z a-z 0-9 . _ - + @ and '/'")
    parts = value.split("/")[1:]
    if ".." in parts:
        raise UnsafeValueError("invalid target path: '..' is not allowed")
    if value != "/" and (posixpath.normpath(value) != value or "" in parts or "." in parts):
        raise UnsafeValueError("invalid target path: must be normalised (no '.', '//' or trailing '/')")
    return value


def validate_label(value: str, what: str = "name") -> str:
    """A bucket name or package group label: like a script name."""
    return _match(_LABEL, value, what, "use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")


def validate_bucket_name(value: str) -> str:
    """A package bucket name."""
    return validate_label(value, "bucket name")


def validate_template_name(value: str) -> str:
    """A template's display name: letters, digits, single inner spaces, ``.``, ``_``, ``-``; 1-100 characters."""
    if isinstance(value, str) and "  " in value:
        raise UnsafeValueError("invalid template name: no repeated spaces")
    return _match(
        _TEMPLATE_NAME, value, "template name", "use 1-100 of A-Z a-z 0-9 space . _ -, starting with a letter or digit"
    )


def validate_tag(value: str) -> str:
    """A tag in Proxmox's tag format; returned lowercased."""
    return _match(_TAG, value.lower() if isinstance(value, str) else value, "tag", "use 1-64 of a-z 0-9 _ . + -")


def validate_unit_name(value: str) -> str:
    """A systemd unit name such as ``nginx.service`` or ``getty@tty1.service``."""
    return _match(_UNIT, value, "unit name", "use A-Z a-z 0-9 : _ . @ -, not starting with '-'")


def validate_hostname(value: str) -> str:
    """An RFC 1123 host label: 1-63 letters, digits and inner hyphens."""
    return _match(_HOSTNAME, value, "hostname", "use 1-63 of A-Z a-z 0-9 and '-', not starting or ending with '-'")


def validate_storage(value: str) -> str:
    """A Proxmox storage id such as ``local-lvm``."""
    return _match(_STORAGE, value, "storage", "a Proxmox storage id such as 'local-lvm'")


def validate_bridge(value: str) -> str:
    """A Linux bridge interface name such as ``vmbr0`` (at most 15 characters)."""
    return _match(_BRIDGE, value, "bridge", "an interface name such as 'vmbr0' (at most 15 characters)")


def validate_os_template(value: str) -> str:
    """A vztmpl volid (``local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst``) or a short name."""
    if isinstance(value, str) and ".." in value:
        raise UnsafeValueError("invalid OS template: '..' is not allowed")
    return _match(
        _OS_TEMPLATE, value, "OS template", "a volid such as 'local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst'"
    )


def validate_mode(value: str) -> str:
    """An octal permission mode without set-id bits (``644``, ``0600``); returned as four digits."""
    _match(_MODE, value, "mode", "an octal mode such as '0644' (no setuid/setgid/sticky bits)")
    return value.rjust(4, "0")


def validate_policy(value: str) -> str:
    """A file policy: ``replace``, ``default`` or ``backup``."""
    if value not in FILE_POLICIES:
        raise UnsafeValueError(f"invalid policy: one of {', '.join(FILE_POLICIES)}")
    return value


def validate_manager(value: str) -> str:
    """A package manager: ``apt``, ``npm``, ``pip`` or ``custom``."""
    if value not in PACKAGE_MANAGERS:
        raise UnsafeValueError(f"invalid package manager: one of {', '.join(PACKAGE_MANAGERS)}")
    return value


def validate_package_name(manager: str, value: str) -> str:
    """A package name under the naming rules of its manager (Debian policy, PEP 508, npm)."""
    validate_manager(manager)
    return _match(_PACKAGE_NAMES[manager], value, f"{manager} package name", _NAME_RULES[manager], MAX_PACKAGE_NAME)


def validate_package_version(manager: str, value: str) -> str:
    """A version or version constraint for a manager; a bare pip version becomes ``==version``."""
    validate_manager(manager)
    if manager == "pip" and isinstance(value, str) and _PIP_BARE_VERSION.fullmatch(value):
        value = f"=={value}"
    return _match(
        _PACKAGE_VERSIONS[manager], value, f"{manager} version", "a version without spaces or quotes", MAX_VERSION
    )


def parse_package_spec(manager: str, spec: str) -> tuple[str, str | None]:
    """Split an install spec into (name, version): ``nginx=1.22*``, ``flask==3.0.0``, ``@types/node@20``.

    Both parts are validated; the version keeps its native notation (pip keeps the operator).
    """
    validate_manager(manager)
    name, version = spec, None
    if manager == "apt" and "=" in spec:
        name, version = spec.split("=", 1)
    elif manager == "npm" and "@" in spec[1:]:
        at = spec.index("@", 1)
        name, version = spec[:at], spec[at + 1 :]
    elif manager == "pip":
        cut = re.search(r"[=!<>~]", spec)
        if cut:
            name, version = spec[: cut.start()], spec[cut.start() :]
    name = validate_package_name(manager, name)
    return name, (validate_package_version(manager, version) if version is not None else None)


def install_argument(manager: str, name: str, version: str | None) -> str:
    """Validate a stored package (name and version) and return the argument its manager installs it with."""
    return install_spec(
        manager,
        validate_package_name(manager, name),
        validate_package_version(manager, version) if version is not None else None,
    )


def install_spec(manager: str, name: str, version: str | None) -> str:
    """The argument that installs ``name`` at ``version`` with ``manager`` (inverse of `parse_package_spec`)."""
    if version is None:
        return name
    if manager == "apt":
        return f"{name}={version}"
    if manager == "npm":
        return f"{name}@{version}"
    if manager == "pip":
        return f"{name}{version}"
    return f"{name}=={version}"


def validate_text(value: str, what: str = "description", max_chars: int = MAX_DESCRIPTION_CHARS) -> str:
    """Free text (descriptions): no NUL or control characters other than newline and tab."""
    if len(value) > max_chars:
        raise UnsafeValueError(f"invalid {what}: at most {max_chars} characters")
    if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in value):
        raise UnsafeValueError(f"invalid {what}: control characters are not allowed")
    return value


def validate_content(value: str, what: str = "content") -> str:
    """Script or file content: text without NUL bytes, at most 1 MiB encoded."""
    if "\x00" in value:
        raise UnsafeValueError(f"invalid {what}: NUL bytes are not allowed")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_CONTENT_BYTES:
        raise UnsafeValueError(f"invalid {what}: at most {MAX_CONTENT_BYTES} bytes")
    return value
