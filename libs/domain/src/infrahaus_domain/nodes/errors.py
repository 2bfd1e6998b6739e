"""Errors of the node registry, one stable code each.

Upstream failures (the node could not be reached, refused the TLS handshake or the token) all
answer 502 in the API, never 401/403: those would tell a client that its own session or rights
failed. The `code` says which upstream problem it was.
"""

from infrahaus_domain.errors import ConflictError, DomainError, UpstreamUnavailable


class NodeUnreachableError(UpstreamUnavailable):
    """Connection refused, DNS failure, timeout or Proxmox's 595/596."""

    code = "node_unreachable"


class NodeTlsMismatchError(DomainError):
    """The node's certificate does not match the pinned fingerprint."""

    code = "tls_mismatch"


class NodeTlsError(DomainError):
    """TLS verification failed for another reason (e.g. a self-signed certificate without a pin)."""

    code = "tls_error"


class NodeAuthError(DomainError):
    """Proxmox answered 401 to the node's API token."""

    code = "node_auth_failed"


class NodePermissionError(DomainError):
    """Proxmox answered 403, or the token lacks privileges infrahaus needs."""

    code = "node_permission_denied"


class NodeRequestError(DomainError):
    """Any other error Proxmox answered with (the detail keeps Proxmox's reason, never a raw body)."""

    code = "node_error"


class NodeNameTakenError(ConflictError):
    code = "node_name_taken"


class NodeHasContainersError(ConflictError):
    code = "node_has_containers"
