"""Domain errors: a stable machine `code` per class, no HTTP in here.

The API maps each class to a status code in one table (`infrahaus_api.errors`).
Messages (`detail`) are shown to API clients: never put a secret or a raw upstream body in one.
"""

import msgspec


class FieldError(msgspec.Struct, kw_only=True, frozen=True):
    """One invalid input field: a dotted path (`network.ip_cidr`) and what is wrong with it."""

    field: str
    message: str


class DomainError(Exception):
    """Root of every error the domain raises on purpose."""

    code: str = "domain_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class SettingsError(DomainError):
    """Invalid configuration; the message names the `INFRAHAUS_*` variable."""

    code = "settings_error"

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class NotFoundError(DomainError):
    code = "not_found"


class ConflictError(DomainError):
    code = "conflict"


class ValidationFailed(DomainError):  # noqa: N818 - names agreed in INTERFACES.md
    """Input that parses but breaks a rule; `errors` lists the offending fields."""

    code = "validation_failed"

    def __init__(self, errors: list[FieldError], detail: str = "The request is invalid.") -> None:
        super().__init__(detail)
        self.errors = errors


class AuthenticationFailed(DomainError):  # noqa: N818 - names agreed in INTERFACES.md
    """Credentials missing, wrong or expired. One generic message: never say which part was wrong."""

    code = "unauthenticated"


class PermissionDenied(DomainError):  # noqa: N818 - names agreed in INTERFACES.md
    code = "permission_denied"


class RateLimited(DomainError):  # noqa: N818 - names agreed in INTERFACES.md
    code = "rate_limited"

    def __init__(self, retry_after: int, detail: str = "Too many requests; try again later.") -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UpstreamUnavailable(DomainError):  # noqa: N818 - names agreed in INTERFACES.md
    """A service we depend on (an auth server, a node) could not be reached."""

    code = "upstream_unavailable"


class CryptoError(DomainError):
    """A stored secret cannot be decrypted (unknown key id, tampered or malformed token)."""

    code = "crypto_error"
