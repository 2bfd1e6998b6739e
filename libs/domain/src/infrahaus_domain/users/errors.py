"""Errors of logging in against a Proxmox VE auth server, one stable code each."""

from infrahaus_domain.errors import AuthenticationFailed, PermissionDenied, UpstreamUnavailable


class InvalidCredentials(AuthenticationFailed):
    """The auth server refused the username or password (never says which). A missing or expired session stays
    `unauthenticated`."""

    code = "invalid_credentials"


class TfaNotSupported(AuthenticationFailed):
    """The account needs a second factor, which infrahaus login does not support."""

    code = "tfa_not_supported"


class AuthServerUnreachable(UpstreamUnavailable):
    """The auth server did not answer (unreachable, TLS pin mismatch, timeout)."""

    code = "auth_server_unreachable"


class SessionRequired(PermissionDenied):
    """Only a cookie session may create API tokens: a leaked token must not be able to mint others that outlive
    its revocation."""

    code = "session_required"
