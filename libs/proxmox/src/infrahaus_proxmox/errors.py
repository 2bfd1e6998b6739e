"""One exception root for everything the Proxmox library raises, with typed subclasses.

Messages keep Proxmox's own wording (it puts the reason in the HTTP reason phrase) and never
contain a token secret or password.
"""


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


class ProxmoxUnreachable(ProxmoxError):  # noqa: N818 - names agreed in INTERFACES.md
    """The node could not be reached: connection refused, DNS failure, reset, or Proxmox's 595."""


class ProxmoxProxyError(ProxmoxUnreachable):
    """596: the contacted node could not proxy the request to the target node. Never retried."""


class ProxmoxTimeout(ProxmoxError):  # noqa: N818 - names agreed in INTERFACES.md
    """A request or a task wait took longer than its timeout."""


class ProxmoxConnectTimeout(ProxmoxUnreachable, ProxmoxTimeout):
    """Establishing the connection (TCP or TLS handshake) timed out: both unreachable and a timeout."""


class ProxmoxTlsError(ProxmoxError):
    """TLS verification failed, including a certificate that does not match the pinned fingerprint."""


class ProxmoxAuthError(ProxmoxError):
    """401: wrong credentials, unknown/revoked token, or an expired ticket that could not be renewed."""


class ProxmoxTfaRequired(ProxmoxAuthError):  # noqa: N818 - names agreed in INTERFACES.md
    """The login answer asks for a second factor, which this client does not complete."""


class ProxmoxPermissionError(ProxmoxError):
    """403: authenticated, but the user or token lacks the privilege."""


class ProxmoxNotFound(ProxmoxError):  # noqa: N818 - names agreed in INTERFACES.md
    """The object does not exist (404, or Proxmox's 500 "... does not exist")."""


class ProxmoxLocked(ProxmoxError):  # noqa: N818 - names agreed in INTERFACES.md
    """The guest is locked ("CT is locked (create)", "can't lock file ...")."""


class ProxmoxConflict(ProxmoxError):  # noqa: N818 - names agreed in INTERFACES.md
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


class ProxmoxTaskFailed(ProxmoxError):  # noqa: N818 - names agreed in INTERFACES.md
    """A task ended with an exit status other than OK/WARNINGS; `log_tail` holds its last log lines."""

    def __init__(self, upid: str, exitstatus: str, log_tail: list[str]):
        super().__init__(f"task {upid} failed: {exitstatus}")
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = list(log_tail)
