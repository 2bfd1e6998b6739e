"""Domain errors: a stable machine `code` per class, no HTTP in here.

The API maps each class to a status code in one table (`infrahaus_api.errors`).
Messages (`detail`) are shown to API clients: never put a secret or a raw upstream body in one.
"""

from typing import Annotated, Literal

import msgspec

FieldErrorCode = Literal[
    "required",
    "unknown_field",
    "type",
    "format",
    "too_short",
    "too_long",
    "too_small",
    "too_large",
    "not_allowed",
    "malformed",
    "invalid",
]


class FieldError(msgspec.Struct, kw_only=True, frozen=True):
    """One invalid input field: its path (`network.ip_cidr`, `scripts[0].id`; `body` for the body as a whole), a
    message written for the person filling the form, and a stable `code` for programs."""

    field: str
    message: str
    code: Annotated[
        FieldErrorCode,
        msgspec.Meta(
            description=(
                "`required` (missing), `unknown_field` (not part of the request), `type` (wrong kind of value), "
                "`format` (the text's shape), `too_short`/`too_long` (length), `too_small`/`too_large` (range), "
                "`not_allowed` (not one of the listed values), `malformed` (the body is not JSON), `invalid` "
                "(a rule about the value or its relation to others)."
            )
        ),
    ] = "invalid"


def summarize(errors: list[FieldError]) -> str:
    """`detail` of a validation problem: how many fields are invalid and which ("2 fields are invalid: hostname,
    vmid"); a form shows it above the fields."""
    fields = list(dict.fromkeys(e.field for e in errors))
    if not fields:
        return "The request is invalid."
    if len(fields) == 1:
        return f"1 field is invalid: {fields[0]}"
    return f"{len(fields)} fields are invalid: {', '.join(fields)}"


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


class ValidationFailed(DomainError):
    """Input that parses but breaks a rule; `errors` lists the offending fields."""

    code = "validation_failed"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        super().__init__(detail or summarize(errors))
        self.errors = errors


class AuthenticationFailed(DomainError):
    """Credentials missing, wrong or expired. One generic message: never say which part was wrong."""

    code = "unauthenticated"


class PermissionDenied(DomainError):
    code = "permission_denied"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, retry_after: int, detail: str = "Too many requests; try again later.") -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UpstreamUnavailable(DomainError):
    """A service we depend on (an auth server, a node) could not be reached."""

    code = "upstream_unavailable"


class CryptoError(DomainError):
    """A stored secret cannot be decrypted (unknown key id, tampered or malformed token)."""

    code = "crypto_error"
