"""Proxmox and SSH errors translated once: into the failure codes of operations and into domain errors.

`failure_code` names what went wrong for the worker (a failed operation's `error.code`, one of `FailureCode`);
`domain_error` (and `ssh_domain_error` for SSH) turns a failed request to a node into the `DomainError` the API
answers with (502 for upstream failures); `ssh_error_code` names a failed SSH connection test; `login_error`
translates a failed login against an auth server. Messages come from the Proxmox library, which never puts secrets
or request bodies in them.
"""

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

from infrahaus_domain.errors import DomainError
from infrahaus_domain.nodes.errors import (
    NodeAuthError,
    NodePermissionError,
    NodeRequestError,
    NodeSshHostKeyMismatchError,
    NodeTlsError,
    NodeTlsMismatchError,
    NodeUnreachableError,
    NotAProxmoxNodeError,
)
from infrahaus_domain.outbound import OutboundDeniedError
from infrahaus_domain.users.errors import AuthServerUnreachable, InvalidCredentials, TfaNotSupported
from infrahaus_proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxLocked,
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxTaskFailed,
    ProxmoxTfaRequired,
    ProxmoxTimeout,
    ProxmoxTlsError,
    ProxmoxTlsHandshakeError,
    ProxmoxUnreachable,
    ProxmoxValidationError,
)
from infrahaus_proxmox.ssh_types import (
    PctNotRunning,
    PctPushFailed,
    PctTimeout,
    SshAuthError,
    SshError,
    SshHostKeyMismatch,
    SshUnreachable,
)

# The `error.code` of a failed operation (documented as an enum in the OpenAPI document).
FailureCode = Literal[
    "vmid_taken",
    "pve_locked",
    "not_running",
    "node_unreachable",
    "permission_denied",
    "ssh_auth_failed",
    "ssh_host_key_mismatch",
    "outbound_denied",
    "ownership_mismatch",
    "storage_full",
    "template_missing",
    "network_unreachable",
    "apt_locked",
    "script_failed",
    "file_failed",
    "validation_failed",
    "package_failed",
    "timeout",
    "worker_lost",
    "task_failed",
    "proxmox_error",
    "internal_error",
    "not_found",
    "invalid_state",
    "snapshot_unsupported",
]
FAILURE_CODES: tuple[FailureCode, ...] = get_args(FailureCode)

REMEDIES: dict[FailureCode, str] = {
    "vmid_taken": "Choose another VMID (GET /api/nodes/{id}/vmids/next) and retry.",
    "pve_locked": "Another Proxmox task (a backup, a snapshot, another operation) holds the container's lock and did "
    "not release it within the wait: let it finish, then retry. A lock left behind by a crashed task stays until "
    "`pct unlock <vmid>` on the node.",
    "not_running": "The container was not running (it stopped, or was stopped, while a step ran in it): start it, "
    "then retry.",
    "node_unreachable": "Check that the node is up and reachable from the worker (API port and SSH), then retry.",
    "permission_denied": "Give the API token the missing privilege; root-only options need SSH as root on the node.",
    "ssh_auth_failed": "The node refused the SSH login: check the node's SSH username and password or private key "
    "(PATCH /api/nodes/{id}) and that the user may log in over SSH, then retry.",
    "ssh_host_key_mismatch": "The node's SSH service presented another host key than the one pinned on first "
    "use: check the node (reinstalled, or someone in between). If the new key is right, set it with PATCH "
    "/api/nodes/{id} (ssh_host_key), then retry.",
    "outbound_denied": "The node's address is refused by the outbound policy (INFRAHAUS_OUTBOUND_ALLOW / "
    "INFRAHAUS_OUTBOUND_DENY); point the node at an allowed address or ask the operator.",
    "ownership_mismatch": "The guest on the node does not carry this container's infrahaus marker (it was made or "
    "changed outside infrahaus); infrahaus leaves it alone. Check the guest on the node; deleting this record "
    "removes only the record.",
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
    "snapshot_unsupported": "The container's storage cannot snapshot (Proxmox snapshots containers on ZFS, LVM-thin, "
    "Ceph RBD and btrfs, not on directory, NFS, CIFS or thick LVM storages). A sync falls back to file backups there; "
    "move the container's volume to a storage that can snapshot for manual snapshots.",
    "not_found": "What the operation is about no longer exists on the node (a snapshot deleted meanwhile, a guest "
    "removed outside infrahaus); list it again.",
    "internal_error": "An unexpected error happened in the worker; retry, and report it if it repeats.",
}

LAST_LINES = 20

_PATTERNS: tuple[tuple[FailureCode, re.Pattern[str]], ...] = (
    ("snapshot_unsupported", re.compile(r"snapshot feature is not available", re.I)),
    ("not_found", re.compile(r"snapshot '[^']*' does not exist", re.I)),
    ("vmid_taken", re.compile(r"already exists", re.I)),
    ("pve_locked", re.compile(r"CT is locked|can't lock file|is locked \(", re.I)),
    ("permission_denied", re.compile(r"only allowed for root@pam|permission check failed|permission denied", re.I)),
    (
        "storage_full",
        re.compile(r"no space left on device|not enough (free )?space|out of space|storage is full", re.I),
    ),
    (
        "template_missing",
        re.compile(
            r"can't find file '[^']*vztmpl|vztmpl.*(does not exist|not found|no such file)"
            r"|template .*(does not exist|not found)",
            re.I,
        ),
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


def classify_text(lines: Iterable[str], default: FailureCode) -> FailureCode:
    """The most specific code whose pattern matches any of the lines (checked in `_PATTERNS` order)."""
    text = "\n".join(lines)
    for code, pattern in _PATTERNS:
        if pattern.search(text):
            return code
    return default


def tail(lines: Sequence[str], count: int = LAST_LINES) -> list[str]:
    """The last `count` lines, each cut to a readable length."""
    return [line[:500] for line in lines[-count:]]


def failure_code(exc: BaseException) -> tuple[FailureCode, dict[str, Any]]:
    """The failure code for an exception raised while working on a container, with the task log tail when a
    Proxmox task failed (`internal_error` for anything that is not a Proxmox, SSH or timeout error)."""
    if isinstance(exc, OutboundDeniedError):
        return "outbound_denied", {}
    if isinstance(exc, SshHostKeyMismatch):
        return "ssh_host_key_mismatch", {}
    # Order matters: ProxmoxConnectTimeout is both unreachable and a timeout; unreachable wins.
    if isinstance(exc, ProxmoxUnreachable | SshUnreachable | ProxmoxTlsError):
        return "node_unreachable", {}
    if isinstance(exc, ProxmoxTaskFailed):
        log_tail = tail(exc.log_tail)
        return classify_text([exc.exitstatus, *log_tail], "task_failed"), {"task_log_tail": log_tail}
    if isinstance(exc, ProxmoxTimeout | PctTimeout | TimeoutError):
        return "timeout", {}
    if isinstance(exc, PctNotRunning):
        return "not_running", {}
    if isinstance(exc, PctPushFailed):
        return "file_failed", {}
    if isinstance(exc, ProxmoxLocked):
        return "pve_locked", {}
    if isinstance(exc, ProxmoxConflict):
        return "vmid_taken", {}
    if isinstance(exc, SshAuthError):
        return "ssh_auth_failed", {}
    if isinstance(exc, ProxmoxPermissionError | ProxmoxAuthError):
        return "permission_denied", {}
    if isinstance(exc, ProxmoxValidationError):
        # A request Proxmox refused for one of its parameters: a schema 400 with `errors`, or a 500 the client
        # attributes to its parameter (unknown storage, unreadable SSH key, a template of the wrong content).
        fields = sorted(exc.errors)
        if "ostemplate" in fields:
            return "template_missing", {"field": "ostemplate"}
        return "validation_failed", {"field": fields[0]} if fields else {}
    if isinstance(exc, ProxmoxNotFound):
        return classify_text([exc.message], "proxmox_error"), {}
    if isinstance(exc, ProxmoxError | SshError):
        return classify_text([str(exc)], "proxmox_error"), {}
    return "internal_error", {}


def domain_error(exc: ProxmoxError, *, pinned: bool) -> DomainError:
    """The domain error for a failed request to a node; Proxmox's reason is kept, never a body or secret."""
    if isinstance(exc, ProxmoxTlsError):
        if pinned:
            return NodeTlsMismatchError(f"The node's TLS certificate does not match the pinned fingerprint: {exc}")
        return NodeTlsError(f"TLS verification of the node failed: {exc}")
    if isinstance(exc, ProxmoxUnreachable | ProxmoxTimeout):
        return NodeUnreachableError(f"The node cannot be reached: {exc}")
    if isinstance(exc, ProxmoxAuthError):
        return NodeAuthError("The node rejected the API token (401).")
    if isinstance(exc, ProxmoxPermissionError):
        return NodePermissionError(f"The node's API token lacks a privilege: {exc}")
    return NodeRequestError(f"The node answered with an error: {exc}")


def not_a_proxmox_node(exc: ProxmoxError) -> DomainError | None:
    """`NotAProxmoxNodeError` when an endpoint not yet known to be Proxmox answered unlike one (no TLS handshake,
    not JSON, not its API); None for failures that say nothing about what listens (unreachable, timeout, a TLS
    certificate that is not trusted, a refused token). Nothing the server sent is repeated."""
    if isinstance(exc, ProxmoxTlsHandshakeError) or (
        isinstance(exc, ProxmoxError)
        and not isinstance(exc, ProxmoxUnreachable | ProxmoxTimeout | ProxmoxTlsError | ProxmoxAuthError)
    ):
        return NotAProxmoxNodeError("The server at this address did not answer like a Proxmox VE node.")
    return None


def ssh_domain_error(exc: SshError, *, action: str) -> DomainError:
    """The domain error for a failed SSH command on a node; `action` names what was attempted
    ("Reading the journal")."""
    if isinstance(exc, SshHostKeyMismatch):
        return NodeSshHostKeyMismatchError(f"{action} over SSH refused: {exc}")
    if isinstance(exc, SshUnreachable | PctTimeout):
        return NodeUnreachableError(f"The node's SSH service cannot be used: {exc}")
    return NodeRequestError(f"{action} over SSH failed: {exc}")


def ssh_error_code(exc: SshError) -> str:
    """The `code` of a failed SSH connection test (`ssh_host_key_mismatch`, `ssh_auth_failed`, ...)."""
    if isinstance(exc, SshHostKeyMismatch):
        return "ssh_host_key_mismatch"
    if isinstance(exc, SshAuthError):
        return "ssh_auth_failed"
    if isinstance(exc, SshUnreachable):
        return "ssh_unreachable"
    return "ssh_error"


def login_error(exc: ProxmoxError) -> DomainError:
    """The domain error for a failed login against an auth server's `/access/ticket`: bad credentials are one
    generic message (never which part was wrong)."""
    if isinstance(exc, ProxmoxTfaRequired):
        return TfaNotSupported(
            "This account requires a second factor, which infrahaus login does not support; use an API token."
        )
    if isinstance(exc, ProxmoxAuthError):
        return InvalidCredentials("Invalid username or password.")
    return AuthServerUnreachable("The authentication server could not be reached.")
