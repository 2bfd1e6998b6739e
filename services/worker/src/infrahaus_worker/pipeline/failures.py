"""Failure classification: every way a pipeline or lifecycle operation can fail maps to a stable code.

`StepError` is what the steps raise once they know what went wrong; `classify` turns any other
exception (Proxmox, SSH, timeouts) into one. Details are built from library messages, which never
carry secrets, and never from a request body.
"""

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from infrahaus_proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxLocked,
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxTaskFailed,
    ProxmoxTimeout,
    ProxmoxTlsError,
    ProxmoxUnreachable,
    ProxmoxValidationError,
)
from infrahaus_proxmox.pct import PctTimeout, SshAuthError, SshError, SshHostKeyMismatch, SshUnreachable

REMEDIES: dict[str, str] = {
    "vmid_taken": "Choose another VMID (GET /api/nodes/{id}/vmids/next) and retry.",
    "pve_locked": "Another Proxmox task holds the container lock; wait for it to finish, then retry.",
    "node_unreachable": "Check that the node is up and reachable from the worker (API port and SSH), then retry.",
    "permission_denied": "Give the API token the missing privilege; root-only options need SSH as root on the node.",
    "storage_full": "Free space on the storage or pick another storage with room, then retry.",
    "template_missing": "Download the OS template to the node (pveam download) or pick an existing one.",
    "network_unreachable": "The container could not reach the network (DNS or package mirror); check bridge, "
    "gateway and nameserver.",
    "apt_locked": "Another package manager run holds the apt lock inside the container; retry when it finished.",
    "script_failed": "Read the script's last output lines, fix the script or the template, then retry.",
    "file_failed": "A template file could not be written; check its target path and the container's disk.",
    "validation_failed": "A template value is not allowed (name or path); fix the template, then retry.",
    "package_failed": "Check the package names and versions for the failing manager, then retry.",
    "timeout": "The step took longer than its time limit; raise the limit or check the node's load, then retry.",
    "worker_lost": "The worker running this operation stopped; retry the operation.",
    "task_failed": "Read the Proxmox task log tail for the reason, fix it, then retry.",
    "proxmox_error": "Proxmox refused the request; read the detail, fix it, then retry.",
    "internal_error": "An unexpected error happened in the worker; retry, and report it if it repeats.",
}

LAST_LINES = 20

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("vmid_taken", re.compile(r"already exists", re.I)),
    ("pve_locked", re.compile(r"CT is locked|can't lock file|is locked \(", re.I)),
    ("permission_denied", re.compile(r"only allowed for root@pam|permission check failed|permission denied", re.I)),
    (
        "storage_full",
        re.compile(r"no space left on device|not enough (free )?space|out of space|storage is full", re.I),
    ),
    (
        "template_missing",
        re.compile(r"vztmpl.*(does not exist|not found|no such file)|template .*(does not exist|not found)", re.I),
    ),
    (
        "apt_locked",
        re.compile(r"could not get lock /var/lib/(dpkg|apt)|unable to acquire the dpkg frontend lock", re.I),
    ),
    (
        "network_unreachable",
        re.compile(
            r"temporary failure (in name )?resolv|could not resolve|failed to fetch|network is unreachable"
            r"|name or service not known|EAI_AGAIN|ENOTFOUND|ENETUNREACH|NewConnectionError|connection timed out",
            re.I,
        ),
    ),
)


class FailureInfo(msgspec.Struct, kw_only=True):
    """The `error` object of a failed operation (SPEC §7): code, detail, remedy and optional specifics."""

    code: str
    detail: str
    remedy: str | None = None
    step: str | None = None
    exit_code: int | None = None
    task_log_tail: list[str] | None = None
    last_lines: list[str] | None = None
    manager: str | None = None
    script: str | None = None


class StepError(Exception):
    """A classified failure raised by a pipeline step or lifecycle action."""

    def __init__(self, info: FailureInfo) -> None:
        super().__init__(f"{info.code}: {info.detail}")
        self.info = info

    @classmethod
    def of(cls, code: str, detail: str, **extra: Any) -> "StepError":
        return cls(FailureInfo(code=code, detail=detail, remedy=REMEDIES.get(code), **extra))


def classify_text(lines: Iterable[str], default: str) -> str:
    """The most specific code whose pattern matches any of the lines (checked in `_PATTERNS` order)."""
    text = "\n".join(lines)
    for code, pattern in _PATTERNS:
        if pattern.search(text):
            return code
    return default


def tail(lines: Sequence[str], count: int = LAST_LINES) -> list[str]:
    """The last `count` lines, each cut to a readable length."""
    return [line[:500] for line in lines[-count:]]


def classify(exc: BaseException, *, step: str | None = None) -> FailureInfo:
    """Turn any exception raised while working on a container into a classified failure."""
    if isinstance(exc, StepError):
        info = exc.info
        return info if info.step or step is None else msgspec.structs.replace(info, step=step)
    code, extra = _code_for(exc)
    detail = str(exc) or type(exc).__name__
    if code == "internal_error":
        # An unexpected exception's text may quote anything; only its type is safe to show.
        detail = f"unexpected {type(exc).__name__}"
    return FailureInfo(code=code, detail=detail, remedy=REMEDIES.get(code), step=step, **extra)


def _code_for(exc: BaseException) -> tuple[str, dict[str, Any]]:
    # Order matters: ProxmoxConnectTimeout is both unreachable and a timeout; unreachable wins.
    if isinstance(exc, ProxmoxUnreachable | SshUnreachable | ProxmoxTlsError | SshHostKeyMismatch):
        return "node_unreachable", {}
    if isinstance(exc, ProxmoxTaskFailed):
        log_tail = tail(exc.log_tail)
        return classify_text([exc.exitstatus, *log_tail], "task_failed"), {"task_log_tail": log_tail}
    if isinstance(exc, ProxmoxTimeout | PctTimeout | TimeoutError):
        return "timeout", {}
    if isinstance(exc, ProxmoxLocked):
        return "pve_locked", {}
    if isinstance(exc, ProxmoxConflict):
        return "vmid_taken", {}
    if isinstance(exc, ProxmoxPermissionError | ProxmoxAuthError | SshAuthError):
        return "permission_denied", {}
    if isinstance(exc, ProxmoxValidationError):
        fields = list(exc.errors)
        if "ostemplate" in fields:
            return "template_missing", {}
        return classify_text([exc.message, *exc.errors.values()], "proxmox_error"), {}
    if isinstance(exc, ProxmoxNotFound):
        return classify_text([exc.message], "proxmox_error"), {}
    if isinstance(exc, ProxmoxError | SshError):
        return classify_text([str(exc)], "proxmox_error"), {}
    return "internal_error", {}
