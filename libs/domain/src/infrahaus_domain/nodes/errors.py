"""Errors of the node registry, one stable code each.

Upstream failures (the node could not be reached, refused the TLS handshake or the token) all
answer 502 in the API, never 401/403: those would tell a client that its own session or rights
failed. The `code` says which upstream problem it was.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from infrahaus_domain.errors import ConflictError, DomainError, FieldError, UpstreamUnavailable, ValidationFailed

if TYPE_CHECKING:
    from infrahaus_domain.nodes.privileges import MissingPrivilege


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


class MissingPrivilegesError(NodePermissionError):
    """The token lacks privileges infrahaus needs; `missing` names each one with its ACL path."""

    code = "missing_privileges"

    def __init__(self, missing: "Sequence[MissingPrivilege]", detail: str) -> None:
        super().__init__(detail)
        self.missing = list(missing)


class NodeRequestError(DomainError):
    """Any other error Proxmox answered with (the detail keeps Proxmox's reason, never a raw body)."""

    code = "node_error"


class NotAProxmoxNodeError(DomainError):
    """The address answered, but not like a Proxmox VE node (no TLS, not its API). The detail never repeats what the
    server said: a probe must not read banners of other services."""

    code = "not_a_proxmox_node"


class NodeSshHostKeyMismatchError(DomainError):
    """The node's SSH service presented a host key other than the pinned one."""

    code = "ssh_host_key_mismatch"


class SecretsRequiredError(ValidationFailed):
    """The node's endpoint changes, but the secrets given for the old one were not sent again: they are never sent
    to an endpoint they were not given for. `errors` names the secrets to send."""

    code = "secrets_required"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors, "Changing where the node is reached needs its secrets again in the same request.")


class NodeNameTakenError(ConflictError):
    code = "node_name_taken"


class NodeHasContainersError(ConflictError):
    code = "node_has_containers"
