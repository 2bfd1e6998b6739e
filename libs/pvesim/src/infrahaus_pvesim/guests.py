"""A container's configuration as pve-container keeps it, shared by the HTTP API (``PUT …/config``) and the SSH side
(``pct set``, which is the same ``update_vm`` run as root@pam).

- Changes go to the ``[pve:pending]`` section first (pve-container ``src/PVE/LXC/Config.pm`` sub
  ``update_pct_config``). A stopped container applies them at once (``vmconfig_apply_pending``); a running one
  applies only the fast-plug options (``$LXC_FASTPLUG_OPTIONS``) and the hot-pluggable ones (cpulimit, cpuunits,
  memory, swap, netN; ``vmconfig_hotplug_pending``); everything else, ``features`` included, waits for the next
  start (``PVE::LXC::vm_start`` applies pending changes).
- ``GET …/config`` merges pending values unless ``current=1`` (pve-guest-common ``AbstractConfig.pm`` sub
  ``load_current_config``); ``GET …/pending`` lists both (``GuestHelpers.pm`` sub ``config_with_pending_array``).
- ``tags`` are normalised (``GuestHelpers.pm`` sub ``get_unique_tags``: split on ``,;`` and space, lower-cased,
  de-duplicated, sorted, joined with ``;``); ``description`` is stored as ``#`` comment lines and read back with
  a newline after every line (``LXC/Config.pm`` subs ``write_pct_config`` / ``parse_pct_config``).
"""

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from infrahaus_pvesim.state import SimGuest

FASTPLUG = frozenset({"description", "onboot", "startup", "protection", "hostname", "hookscript", "cores", "tags"})
_HOTPLUG = frozenset({"cpulimit", "cpuunits", "memory", "swap"})
_REQUIRED = frozenset({"memory", "rootfs", "ostype"})
# parse_pct_config turns boolean and integer properties into JSON numbers; `number` ones (cpulimit) stay strings.
_NUMERIC = frozenset(
    {"cores", "memory", "swap", "cpuunits", "tty", "onboot", "debug", "console", "template", "unprivileged"}
    | {"protection"}
)
# Keys a container config may hold (LXC/Config.pm $confdesc), besides netN, mpN, unusedN, devN.
KNOWN_OPTIONS = frozenset(
    {
        "arch",
        "cmode",
        "console",
        "cores",
        "cpulimit",
        "cpuunits",
        "debug",
        "description",
        "entrypoint",
        "env",
        "features",
        "hookscript",
        "hostname",
        "lock",
        "memory",
        "nameserver",
        "onboot",
        "ostype",
        "protection",
        "rootfs",
        "searchdomain",
        "startup",
        "swap",
        "tags",
        "template",
        "timezone",
        "tty",
        "unprivileged",
    }
)
_INDEXED = re.compile(r"^(net|mp|unused|dev)\d+$")


class ConfigError(Exception):
    """A refused change: ``status`` 500 with the message, or 400 with per-parameter ``errors``."""

    def __init__(self, status: int, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = dict(errors) if errors else None


def option_exists(key: str) -> bool:
    return key in KNOWN_OPTIONS or bool(_INDEXED.match(key))


def split_list(value: str) -> list[str]:
    """pve-common split_list: `,`, `;` and whitespace separate."""
    return [item for item in re.split(r"[,;\s]+", value) if item]


def normalize_tags(value: str) -> str:
    """GuestHelpers get_unique_tags with the default tag-style: lower-case, unique, sorted, joined with `;`."""
    return ";".join(sorted({tag.lower() for tag in split_list(value)}))


def stored_description(value: str) -> str:
    """What reading the config back gives for a description: each stored comment line with a newline."""
    lines = value.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return "".join(f"{line}\n" for line in lines)


def _render(config: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in config.items():
        if key in _NUMERIC and re.fullmatch(r"-?\d+", value):
            data[key] = int(value)
        else:
            data[key] = value
    return data


def digest(guest: SimGuest) -> str:
    """SHA-1 of the config file as written (main section, then the pending one)."""
    text = "".join(f"{k}: {v}\n" for k, v in sorted(guest.visible_config().items()))
    if guest.lock is not None:
        text += f"lock: {guest.lock}\n"
    if guest.pending or guest.pending_delete:
        text += "[pve:pending]\n" + "".join(f"{k}: {v}\n" for k, v in sorted(guest.pending.items()))
        if guest.pending_delete:
            text += f"delete: {','.join(sorted(guest.pending_delete))}\n"
    for name, snapshot in sorted(guest.snapshots.items()):
        text += f"[{name}]\n" + "".join(f"{k}: {v}\n" for k, v in sorted(snapshot.config.items()))
        text += f"snaptime: {snapshot.snaptime}\n"
        if snapshot.snapstate:
            text += f"snapstate: {snapshot.snapstate}\n"
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - PVE's config digest is SHA-1


def read_config(guest: SimGuest, *, current: bool) -> dict[str, Any]:
    """``GET …/config``: current values, with pending ones merged in unless ``current``."""
    config = dict(guest.visible_config())
    if not current:
        config.update(guest.pending)
        for key in guest.pending_delete:
            config.pop(key, None)
    data = _render(config)
    if guest.lock is not None:
        data["lock"] = guest.lock
    data["digest"] = digest(guest)
    return data


def pending_list(guest: SimGuest) -> list[dict[str, Any]]:
    """``GET …/pending``: ``{key, value}`` per current key, ``pending`` for a waiting value, ``delete: 1``."""
    current = _render(guest.visible_config())
    if guest.lock is not None:
        current["lock"] = guest.lock
    waiting = _render(guest.pending)
    result: list[dict[str, Any]] = []
    for key in sorted(set(current) | set(waiting) | guest.pending_delete):
        entry: dict[str, Any] = {"key": key}
        if key in current:
            entry["value"] = current[key]
        if key in waiting:
            entry["pending"] = waiting[key]
        if key in guest.pending_delete:
            entry["delete"] = 1
        result.append(entry)
    return result


def update_config(
    guest: SimGuest,
    params: Mapping[str, str],
    *,
    delete: Iterable[str] = (),
    revert: Iterable[str] = (),
    running: bool,
) -> None:
    """update_pct_config: record changes as pending, then apply what the container's state allows. ``params`` are
    already-normalised config values (``net*`` printed, ``features`` sorted)."""
    delete, revert = list(delete), list(revert)
    for key in revert:
        if not option_exists(key):
            raise ConfigError(400, "Parameter verification failed.", {"revert": f"unknown option '{key}'"})
        guest.pending.pop(key, None)
        guest.pending_delete.discard(key)
    for key in delete:
        if not option_exists(key):
            raise ConfigError(400, "Parameter verification failed.", {"delete": f"unknown option '{key}'"})
        if key in params:
            message = f"you can't use '-{key}' and -delete {key}' at the same time"
            raise ConfigError(400, "Parameter verification failed.", {"delete": message})
    for key in delete:
        if key not in guest.config and key not in guest.pending and key != "lock":
            continue  # PVE warns "cannot delete '<key>' - not set in current configuration!"
        if key in _REQUIRED:
            raise ConfigError(500, f"unable to delete required option '{key}'")
        if key == "unprivileged":
            raise ConfigError(500, f"unable to delete read-only option: '{key}'")
        guest.pending.pop(key, None)
        guest.pending_delete.add(key)
    for key, value in sorted(params.items()):
        if key == "unprivileged":
            raise ConfigError(500, f"unable to modify read-only option: '{key}'")
        if key == "tags":
            value = normalize_tags(value)
        guest.pending[key] = value
        guest.pending_delete.discard(key)
    _cleanup_pending(guest)
    selection = set(params) | set(delete)
    if running:
        _hotplug(guest, selection)
    else:
        apply_pending(guest)


def _cleanup_pending(guest: SimGuest) -> None:
    """AbstractConfig cleanup_pending: a pending value equal to the current one, or the deletion of a key that is
    not set, is no change."""
    for key, value in list(guest.pending.items()):
        if guest.config.get(key) == value:
            del guest.pending[key]
    guest.pending_delete = {key for key in guest.pending_delete if key in guest.config or key == "lock"}


def _hotplug(guest: SimGuest, selection: set[str]) -> None:
    for key in sorted(selection):
        plug = key in FASTPLUG or key == "lock" or key in _HOTPLUG or key.startswith("net")
        if not plug:
            continue
        if key in guest.pending_delete:
            _drop(guest, key)
            guest.pending_delete.discard(key)
        elif key in guest.pending:
            _set(guest, key, guest.pending.pop(key))


def apply_pending(guest: SimGuest) -> None:
    """vmconfig_apply_pending (a stopped container, or the next start)."""
    for key in sorted(guest.pending_delete):
        _drop(guest, key)
    guest.pending_delete.clear()
    for key, value in sorted(guest.pending.items()):
        _set(guest, key, value)
    guest.pending.clear()


def _set(guest: SimGuest, key: str, value: str) -> None:
    if key == "lock":
        guest.lock = value
    elif key == "description":
        text = stored_description(value)
        if text:
            guest.config[key] = text
        else:
            guest.config.pop(key, None)
    else:
        guest.config[key] = value


def _drop(guest: SimGuest, key: str) -> None:
    if key == "lock":
        guest.lock = None
    else:
        guest.config.pop(key, None)
