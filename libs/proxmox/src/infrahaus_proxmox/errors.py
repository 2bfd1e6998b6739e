"""One exception root for everything the Proxmox library raises, with typed subclasses.

Messages keep Proxmox's own wording (it puts the reason in the HTTP reason phrase) and never
contain a token secret or password.
"""

import re

_LOCKED_RE = re.compile(r"\bis locked\b|can't lock file|locked \(", re.IGNORECASE)


def is_lock_message(text: str) -> bool:
    """Whether a Proxmox message says a guest is locked: ``CT is locked (backup)`` (the config lock, pve-guest-common
    AbstractConfig.pm check_lock) or ``can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout`` (its config
    file lock, pve-common Tools.pm lock_file_full)."""
    return bool(_LOCKED_RE.search(text))


class ProxmoxError(Exception):
    """Root of every error raised by `infrahaus_proxmox`.

    `status` is the HTTP status when the error came from a response, `method` and `path` name the
    request (the path below /api2/json, never a query string).
    """

    def __init__(self, message: str, *, status: int | None = None, method: str | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.path = path

    def __str__(self) -> str:
        if self.method is None:
            return self.message
        status = f" -> {self.status}" if self.status is not None else ""
        return f"{self.message} ({self.method} {self.path}{status})"


class ProxmoxUnreachable(ProxmoxError):
    """The node could not be reached: connection refused, DNS failure, reset, or Proxmox's 595."""


class ProxmoxProxyError(ProxmoxUnreachable):
    """596/597/599: proxying the request failed after it may have been sent (TLS or timeout while sending, the
    answer broke off, or was garbled). The request may have run: never retried."""


class ProxmoxTimeout(ProxmoxError):
    """A request or a task wait took longer than its timeout."""


class ProxmoxConnectTimeout(ProxmoxUnreachable, ProxmoxTimeout):
    """Establishing the connection (TCP or TLS handshake) timed out: both unreachable and a timeout."""


class ProxmoxTlsError(ProxmoxError):
    """TLS verification failed, including a certificate that does not match the pinned fingerprint."""


class ProxmoxTlsHandshakeError(ProxmoxTlsError):
    """No TLS handshake was possible at all (the port speaks something else): unlike a certificate that is not
    trusted, this says the peer is no HTTPS server."""


class ProxmoxAuthError(ProxmoxError):
    """401: wrong credentials, unknown/revoked token, or an expired ticket that could not be renewed."""


class ProxmoxTfaRequired(ProxmoxAuthError):
    """The login answer asks for a second factor, which this client does not complete."""


class ProxmoxPermissionError(ProxmoxError):
    """403: authenticated, but the user or token lacks the privilege."""


class ProxmoxNotFound(ProxmoxError):
    """The object does not exist (404, or Proxmox's 500 "... does not exist")."""


class ProxmoxLocked(ProxmoxError):
    """The guest is locked ("CT is locked (create)", "can't lock file ...")."""


class ProxmoxConflict(ProxmoxError):
    """The object already exists ("CT 100 already exists")."""


class ProxmoxValidationError(ProxmoxError):
    """400 parameter verification failed; `errors` maps each parameter to Proxmox's message."""

    def __init__(
        self,
        message: str,
        errors: dict[str, str] | None = None,
        *,
        status: int | None = 400,
        method: str | None = None,
        path: str | None = None,
    ):
        super().__init__(message, status=status, method=method, path=path)
        self.errors: dict[str, str] = dict(errors or {})


class ProxmoxServerError(ProxmoxError):
    """Any other error status (mostly 500) with Proxmox's message."""

    def __init__(self, status: int, message: str, *, method: str | None = None, path: str | None = None):
        super().__init__(message, status=status, method=method, path=path)


class ProxmoxResponseError(ProxmoxError):
    """The node answered with a body this client cannot make sense of."""


class ProxmoxTaskFailed(ProxmoxError):
    """A task ended with an exit status other than OK/WARNINGS; `log_tail` holds its last log lines.

    ``unexpected status`` means the task's process died without a last log line (node reboot, daemon killed).
    """

    def __init__(self, upid: str, exitstatus: str, log_tail: list[str]):
        super().__init__(f"task {upid} failed: {exitstatus}")
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = list(log_tail)

    @property
    def locked(self) -> bool:
        """The task failed on the container's lock (start/stop/shutdown check it inside the task)."""
        return is_lock_message(self.exitstatus)

    @property
    def killed(self) -> bool:
        """The task died mid-way (pve-common UPID.pm: no ``TASK OK/ERROR`` line -> ``unexpected status``)."""
        return self.exitstatus == "unexpected status"
