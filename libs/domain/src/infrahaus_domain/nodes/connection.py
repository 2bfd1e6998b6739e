"""Talking to a registered node: clients built from decrypted settings, and Proxmox errors as domain errors.

`NodeEndpoint` holds plaintext connection settings only for the duration of one call; its repr hides
the secrets so it can never leak through a log line or a traceback.
"""

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import DomainError, FieldError, ValidationFailed
from infrahaus_domain.metrics import proxmox_event_hooks
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.errors import (
    NodeAuthError,
    NodePermissionError,
    NodeRequestError,
    NodeTlsError,
    NodeTlsMismatchError,
    NodeUnreachableError,
)
from infrahaus_proxmox import ProxmoxClient, TlsPolicy, TokenAuth
from infrahaus_proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxError,
    ProxmoxPermissionError,
    ProxmoxTimeout,
    ProxmoxTlsError,
    ProxmoxUnreachable,
)
from infrahaus_proxmox.pct import PctExecRunner, SshTarget

# What the token must be allowed to do for infrahaus to create and operate containers.
REQUIRED_PRIVILEGES = frozenset(
    {"Sys.Audit", "VM.Allocate", "VM.Audit", "VM.Config.Options", "VM.PowerMgmt", "Datastore.AllocateSpace"}
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeEndpoint:
    """Plaintext connection settings of one node (a saved one, or one being registered)."""

    host: str
    port: int
    pve_node: str | None
    token_id: str
    token_secret: str = dataclasses.field(repr=False)
    tls_verify: bool
    tls_fingerprint: str | None
    ssh_host: str
    ssh_port: int
    ssh_username: str
    ssh_password: str | None = dataclasses.field(default=None, repr=False)
    ssh_private_key: str | None = dataclasses.field(default=None, repr=False)
    ssh_host_key: str | None = None

    @classmethod
    def from_node(cls, node: Node, box: SecretBox) -> "NodeEndpoint":
        """Decrypt a saved node's secrets into an endpoint."""
        return cls(
            host=node.host,
            port=node.port,
            pve_node=node.pve_node,
            token_id=node.token_id,
            token_secret=box.decrypt(node.token_secret),
            tls_verify=node.tls_verify,
            tls_fingerprint=node.tls_fingerprint,
            ssh_host=node.effective_ssh_host,
            ssh_port=node.ssh_port,
            ssh_username=node.ssh_username,
            ssh_password=box.decrypt(node.ssh_password) if node.ssh_password else None,
            ssh_private_key=box.decrypt(node.ssh_private_key) if node.ssh_private_key else None,
            ssh_host_key=node.ssh_host_key,
        )

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def tls_policy(self) -> TlsPolicy:
        # A pin wins over verification: it is the stronger statement about this exact node.
        if self.tls_fingerprint:
            return TlsPolicy.pinned(self.tls_fingerprint)
        return TlsPolicy.verified() if self.tls_verify else TlsPolicy.insecure()

    def require_pve_node(self) -> str:
        if self.pve_node is None:
            raise ValidationFailed([FieldError(field="pve_node", message="unknown; run a connection test")])
        return self.pve_node


def proxmox_client(endpoint: NodeEndpoint, *, timeout: float = 10.0) -> ProxmoxClient:
    """A client for the node's API, authenticated with its token and TLS policy. Use as `async with`."""
    auth = TokenAuth(token_id=endpoint.token_id, secret=endpoint.token_secret)
    return ProxmoxClient(
        endpoint.base_url, auth, tls=endpoint.tls_policy, timeout=timeout, event_hooks=proxmox_event_hooks()
    )


def pct_runner(endpoint: NodeEndpoint, *, connect_timeout: float = 10.0) -> PctExecRunner:
    """An SSH runner for `pct` on the node, pinned to its stored host key (or trusting on first use)."""
    target = SshTarget(
        host=endpoint.ssh_host,
        port=endpoint.ssh_port,
        username=endpoint.ssh_username,
        password=endpoint.ssh_password,
        private_key=endpoint.ssh_private_key,
        host_key=endpoint.ssh_host_key,
    )
    return PctExecRunner(target, connect_timeout=connect_timeout)


def ssh_key_errors(private_key: str | None, host_key: str | None) -> list[FieldError]:
    """Field errors for SSH keys the runner could not use (checked without connecting; messages quote no key)."""
    errors: list[FieldError] = []
    if private_key is not None:
        try:
            PctExecRunner(SshTarget(host="-", private_key=private_key))
        except ValueError:
            errors.append(FieldError(field="ssh_private_key", message="not a readable unencrypted private key"))
    if host_key is not None:
        try:
            PctExecRunner(SshTarget(host="-", host_key=host_key))
        except ValueError:
            errors.append(FieldError(field="ssh_host_key", message="not an OpenSSH public key line"))
    return errors


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


@contextmanager
def node_errors(endpoint: NodeEndpoint) -> Iterator[None]:
    """Turn Proxmox errors raised inside the block into domain errors."""
    try:
        yield
    except ProxmoxError as exc:
        raise domain_error(exc, pinned=endpoint.tls_fingerprint is not None) from exc


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiCheck:
    version: str
    pve_node: str
    latency_ms: float


async def check_api(endpoint: NodeEndpoint, *, request_timeout: float = 10.0) -> ApiCheck:
    """The connection test run before a node is saved: version, the node's status and the token's privileges.

    Detects `pve_node` when the endpoint has none. Raises the node domain errors.
    """
    with node_errors(endpoint):
        async with proxmox_client(endpoint, timeout=request_timeout) as client:
            started = time.perf_counter()
            version = await client.version()
            latency_ms = (time.perf_counter() - started) * 1000
            pve_node = endpoint.pve_node or await _detect_pve_node(client)
            await client.nodes.status(pve_node)
            permissions = await client.access.permissions()
    granted = {priv for privs in permissions.values() for priv, allowed in privs.items() if allowed}
    missing = sorted(REQUIRED_PRIVILEGES - granted)
    if missing:
        raise NodePermissionError(f"The node's API token lacks privileges: {', '.join(missing)}.")
    return ApiCheck(version=version.version, pve_node=pve_node, latency_ms=round(latency_ms, 2))


async def _detect_pve_node(client: ProxmoxClient) -> str:
    names = sorted(summary.node for summary in await client.nodes.list())
    if len(names) == 1:
        return names[0]
    message = f"the cluster has several nodes ({', '.join(names)}); name one" if names else "the node lists no nodes"
    raise ValidationFailed([FieldError(field="pve_node", message=message)])
