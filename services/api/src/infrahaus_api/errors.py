"""The one problem-details table: every error the API returns is RFC 9457 `application/problem+json` with a `code`.

Domain errors map by class (most specific first) to a status; Litestar's HTTP exceptions map by status; advanced-
alchemy's repository errors map to 404/409. Anything unknown is a 500 `internal_error` that echoes nothing.
Feature helpers add their DomainError subclasses to `DOMAIN_STATUS`.
"""

import logging
from http import HTTPStatus
from typing import Annotated, Any, Literal, cast, get_args

import msgspec
from advanced_alchemy.exceptions import IntegrityError as AAIntegrityError
from advanced_alchemy.exceptions import NotFoundError as AANotFoundError
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import OperationalError as SAOperationalError

from infrahaus_api.validation import humanize
from infrahaus_domain.containers.errors import NoEligibleNodeError
from infrahaus_domain.containers.placement_schemas import PlacementDecision
from infrahaus_domain.errors import (
    AuthenticationFailed,
    ConflictError,
    CryptoError,
    DomainError,
    FieldError,
    NotFoundError,
    PermissionDenied,
    RateLimited,
    SettingsError,
    UpstreamUnavailable,
    ValidationFailed,
    summarize,
)
from infrahaus_domain.nodes.errors import (
    MissingPrivilegesError,
    NodeAuthError,
    NodePermissionError,
    NodeRequestError,
    NodeSshHostKeyMismatchError,
    NodeTlsError,
    NodeTlsMismatchError,
    NodeUnreachableError,
    NotAProxmoxNodeError,
)
from infrahaus_domain.nodes.privileges import MissingPrivilege
from infrahaus_domain.outbound import OutboundDeniedError
from infrahaus_domain.ports import LockTimeout

logger = logging.getLogger("infrahaus.api")

PROBLEM_JSON = "application/problem+json"


# Every `code` a problem can carry: the codes of the domain errors below and of `HTTP_CODES`, and those answered
# directly. A new code is added here (a test fails otherwise); clients generate an enum from it.
ProblemCode = Literal[
    "auth_not_configured",
    "auth_server_unreachable",
    "bad_request",
    "busy",
    "conflict",
    "container_busy",
    "crypto_error",
    "csrf_failed",
    "domain_error",
    "forbidden",
    "idempotency_key_in_progress",
    "idempotency_key_reused",
    "internal_error",
    "invalid_credentials",
    "invalid_header",
    "invalid_state",
    "method_not_allowed",
    "missing_privileges",
    "no_eligible_node",
    "no_node_configured",
    "no_template",
    "node_auth_failed",
    "node_error",
    "node_has_containers",
    "node_name_taken",
    "node_permission_denied",
    "node_unreachable",
    "not_a_proxmox_node",
    "not_found",
    "not_ready",
    "operation_cancelled",
    "outbound_denied",
    "ownership_mismatch",
    "payload_too_large",
    "permission_denied",
    "pve_locked",
    "rate_limited",
    "secret_shown_once",
    "secrets_required",
    "service_unavailable",
    "session_required",
    "settings_error",
    "ssh_auth_failed",
    "ssh_host_key_mismatch",
    "ssh_key_invalid",
    "ssh_not_configured",
    "template_read_only",
    "templates_dir_unavailable",
    "tfa_not_supported",
    "tls_error",
    "tls_mismatch",
    "unauthenticated",
    "unsupported_media_type",
    "upstream_unavailable",
    "validation_failed",
    "vmid_taken",
]
PROBLEM_CODES: frozenset[str] = frozenset(get_args(ProblemCode))


class ProblemDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details plus a stable machine `code` (and per-field `errors` for validation, and for
    `missing_privileges` every privilege a node's API token lacks, by name and ACL path)."""

    type: str
    title: str
    status: int
    detail: str
    code: Annotated[
        ProblemCode,
        msgspec.Meta(
            description="What went wrong, stable for programs to act on (`unauthenticated`: no valid "
            "session or token; `invalid_credentials`: a login with a wrong username or password; ...)."
        ),
    ]
    errors: list[FieldError] | None = None
    missing_privileges: list[MissingPrivilege] | None = None
    placement: Annotated[
        PlacementDecision | None,
        msgspec.Meta(description="For `no_eligible_node`: every node with its figures and why it was refused."),
    ] = None


class CsrfFailed(PermissionDenied):
    code = "csrf_failed"


class UnsupportedMediaType(DomainError):  # noqa: N818 - named like its HTTP status
    code = "unsupported_media_type"


class InvalidHeaderError(DomainError):
    """A request header the API reads is malformed or oversized (e.g. `Last-Event-ID`)."""

    code = "invalid_header"


# DomainError class -> HTTP status. Looked up along the exception's MRO, so subclasses inherit their base's status
# unless listed themselves.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    ValidationFailed: 422,
    NotFoundError: 404,
    ConflictError: 409,
    LockTimeout: 409,
    AuthenticationFailed: 401,
    CsrfFailed: 403,
    PermissionDenied: 403,
    UnsupportedMediaType: 415,
    InvalidHeaderError: 400,
    RateLimited: 429,
    UpstreamUnavailable: 503,
    # Any failure of a user's Proxmox node is a 502 with its own code, never a 401/403 of our own.
    NodeUnreachableError: 502,
    NodeTlsMismatchError: 502,
    NodeTlsError: 502,
    NodeSshHostKeyMismatchError: 502,
    NotAProxmoxNodeError: 502,
    # A refused address is the request's problem (or the operator's policy), not an upstream failure.
    OutboundDeniedError: 422,
    NodeAuthError: 502,
    NodePermissionError: 502,
    NodeRequestError: 502,
    CryptoError: 500,
    SettingsError: 500,
    DomainError: 400,
}

# HTTP status (of Litestar's own exceptions) -> code.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "service_unavailable",
}

_HTTP_DETAILS: dict[int, str] = {
    401: "Authentication required: send a session cookie or an `Authorization: Bearer` token.",
    404: "Not found.",
    413: "The request body is too large.",
}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    title: str | None = None,
    missing_privileges: list[MissingPrivilege] | None = None,
    placement: PlacementDecision | None = None,
) -> Response[ProblemDetail]:
    """A problem+json response; also used by handlers that answer an error without raising (health)."""
    body = ProblemDetail(
        type=f"urn:infrahaus:problem:{code}",
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        # Domain errors carry their code as text; a test keeps every code the code base uses in `ProblemCode`.
        code=cast("ProblemCode", code),
        errors=errors,
        missing_privileges=missing_privileges,
        placement=placement,
    )
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_BACKEND_DOWN = (RedisConnectionError, RedisTimeoutError, SAOperationalError, SAInterfaceError, ConnectionError)


def _domain_status(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 400


def _validation_errors(exc: ValidationException, request: Request[Any, Any, Any] | None = None) -> list[FieldError]:
    errors: list[FieldError] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key") or "")
        # Litestar names the parameter in `key` (the body's errors come from `validation.check` before this).
        parameter = "" if key == "data" else key
        error = humanize(str(item.get("message", "invalid value")), _parameter_type(request, key), parameter)
        errors.append(error)
    return errors or [FieldError(field="body", message=exc.detail, code="invalid")]


def _parameter_type(request: Request[Any, Any, Any] | None, parameter: str) -> Any:
    """The declared type of a query, path or header parameter (to list an enum's values), or None."""
    if request is None or not parameter:
        return None
    try:
        definition = request.route_handler.parsed_fn_signature.parameters.get(parameter)
    except Exception:  # not inside a route (e.g. a 404 before routing)
        return None
    return None if definition is None else definition.annotation


def _retry_headers(retry_after: float | int) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(retry_after + 0.999)))}


def exception_to_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemDetail]:
    """The app's only exception handler."""
    if isinstance(exc, ValidationFailed):
        return problem_response(422, exc.code, exc.detail, errors=exc.errors)
    if isinstance(exc, RateLimited):
        return problem_response(429, exc.code, exc.detail, headers=_retry_headers(exc.retry_after))
    if isinstance(exc, DomainError):
        status = _domain_status(exc)
        if status == 500:
            logger.error("domain error %s answered as %s", exc.code, status, exc_info=exc)
            return problem_response(status, "internal_error", "An unexpected error occurred.")
        missing = exc.missing if isinstance(exc, MissingPrivilegesError) else None
        placement = exc.placement if isinstance(exc, NoEligibleNodeError) else None
        return problem_response(status, exc.code, exc.detail, missing_privileges=missing, placement=placement)
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc, request)
        return problem_response(422, "validation_failed", summarize(errors), errors=errors)
    if isinstance(exc, HTTPException) and isinstance(exc.__cause__, SerializationException):
        # The decoder's message names the position ("malformed JSON at byte 14"), never a value.
        message = (str(exc.__cause__) or "malformed JSON").rstrip(".")
        error = FieldError(field="body", message=f"The body is not valid JSON: {message}.", code="malformed")
        return problem_response(422, "validation_failed", "The request body is not valid JSON.", errors=[error])
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 429 and "Retry-After" not in headers:
            headers.update(_retry_headers(1))
        detail = _HTTP_DETAILS.get(status) if exc.detail == HTTPStatus(status).phrase else exc.detail
        return problem_response(status, HTTP_CODES.get(status, "bad_request"), detail or exc.detail, headers=headers)
    if isinstance(exc, AANotFoundError):
        return problem_response(404, "not_found", "Not found.")
    if isinstance(exc, AAIntegrityError | SAIntegrityError):
        return problem_response(409, "conflict", "The request conflicts with existing data.")
    if isinstance(exc, HTTPException) and exc.status_code == 503:
        return problem_response(503, "service_unavailable", "The service is temporarily unavailable.")
    if isinstance(exc, _BACKEND_DOWN):
        # The database or Redis is unreachable: say "try again later", log the cause, echo nothing.
        logger.error("backend unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(503, "service_unavailable", "The service is temporarily unavailable.")
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal_error", "An unexpected error occurred.")


def problem_spec(description: str) -> ResponseSpec:
    """Document an extra problem+json response on a handler (`responses={429: problem_spec("...")}`)."""
    return ResponseSpec(
        data_container=ProblemDetail, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


# Documented on every operation so generated SDKs know the error shape (the auto-documented 400 is not problem+json).
PROBLEM_RESPONSES: dict[int, ResponseSpec] = {
    400: problem_spec("Bad request"),
    401: problem_spec("Authentication required"),
    403: problem_spec("Forbidden (for cookie sessions: missing or wrong X-CSRF-Token)"),
    404: problem_spec("Not found (another user's resource answers the same)"),
    409: problem_spec("Conflict with the current state"),
    422: problem_spec("Validation failed; `errors` lists the fields"),
}

__all__ = [
    "DOMAIN_STATUS",
    "PROBLEM_CODES",
    "PROBLEM_JSON",
    "PROBLEM_RESPONSES",
    "CsrfFailed",
    "InvalidHeaderError",
    "ProblemCode",
    "ProblemDetail",
    "UnsupportedMediaType",
    "exception_to_problem",
    "problem_response",
    "problem_spec",
]
