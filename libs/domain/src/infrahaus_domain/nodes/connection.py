"""Talking to a registered node: clients built from decrypted settings, and Proxmox errors as domain errors.

`NodeEndpoint` holds plaintext connection settings only for the duration of one call; its repr hides
the secrets so it can never leak through a log line or a traceback. `NodeAccess` is the one way to a node: every
Proxmox client and SSH runner it builds goes through the outbound policy (`infrahaus_domain.outbound`) and pins the
node's SSH host key on the first successful connection (`HostKeyPins`), whichever path connects first.
"""

import dataclasses
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import FieldError, ValidationFailed
from infrahaus_domain.metrics import proxmox_event_hooks
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.errors import MissingPrivilegesError, NotAProxmoxNodeError
from infrahaus_domain.nodes.privileges import describe, node_missing_privileges
from infrahaus_domain.outbound import OutboundPolicy, UnresolvableHostError
from infrahaus_domain.proxmox_errors import domain_error, not_a_proxmox_node
from infrahaus_domain.settings import OutboundSettings
from infrahaus_proxmox import CertificateInfo, ProxmoxClient, TlsPolicy, TokenAuth, fetch_certificate
from infrahaus_proxmox.errors import ProxmoxAuthError, ProxmoxError, ProxmoxUnreachable
from infrahaus_proxmox.ssh_types import SshHostKeyMismatch, SshTarget, SshUnreachable

if TYPE_CHECKING:
    from infrahaus_proxmox.pct import PctExecRunner


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
    # The saved node these settings belong to (None while a node is being registered): where a first-seen SSH host
    # key is pinned.
    node_id: uuid.UUID | None = None

    @classmethod
    def from_node(cls, node: Node, box: SecretBox) -> "NodeEndpoint":
        """Decrypt a saved node's secrets into an endpoint."""
        return cls(
            node_id=node.id,
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
            raise ValidationFailed(
                [FieldError(field="pve_node", message="Not known yet: run a connection test to detect it.")]
            )
        return self.pve_node


def _key_line(line: str) -> str:
    """``type base64`` of an OpenSSH public key line (the comment dropped), for comparisons."""
    return " ".join(line.split()[:2])


class HostKeyPins:
    """Pins a node's SSH host key on the first successful connection by any path (the connection test, preflight,
    service logs, the worker), in a short transaction of its own. Two paths connecting at once for the first time
    cannot both win: the second one must have seen the key the first one stored, or it fails with
    `SshHostKeyMismatch`. A key seen at an SSH endpoint the node no longer has is not stored."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def pin(self, endpoint: "NodeEndpoint", key: str) -> None:
        if endpoint.node_id is None:
            return
        same_endpoint = (
            Node.id == endpoint.node_id,
            Node.ssh_port == endpoint.ssh_port,
            func.coalesce(Node.ssh_host, Node.host) == endpoint.ssh_host,
        )
        async with self._sessionmaker() as session, session.begin():
            stored = await session.scalar(
                update(Node)
                .where(*same_endpoint, Node.ssh_host_key.is_(None))
                .values(ssh_host_key=key)
                .returning(Node.id)
            )
            if stored is not None:
                return
            current = await session.scalar(select(Node.ssh_host_key).where(*same_endpoint))
        if current is not None and _key_line(current) != _key_line(key):
            raise SshHostKeyMismatch(
                f"host key of {endpoint.ssh_host}:{endpoint.ssh_port} does not match the key pinned meanwhile"
            )


@dataclasses.dataclass(frozen=True)
class NodeAccess:
    """What every connection to a node needs besides the node's own settings: the key ring that decrypts them, the
    outbound policy, and where first-seen SSH host keys are pinned (None: nothing is stored, e.g. in scripts)."""

    box: SecretBox
    policy: OutboundPolicy
    pins: HostKeyPins | None = None

    @classmethod
    def build(
        cls, box: SecretBox, outbound: OutboundSettings, sessionmaker: async_sessionmaker[AsyncSession] | None
    ) -> "NodeAccess":
        policy = OutboundPolicy.parse(outbound.allow, outbound.deny, loopback=outbound.loopback)
        return cls(box=box, policy=policy, pins=HostKeyPins(sessionmaker) if sessionmaker is not None else None)

    def endpoint(self, node: Node) -> "NodeEndpoint":
        """A saved node's connection settings with decrypted secrets."""
        return NodeEndpoint.from_node(node, self.box)

    def client(self, endpoint: "NodeEndpoint", *, timeout: float = 10.0, retries: int = 2) -> ProxmoxClient:
        """A client for the node's API, authenticated with its token and TLS policy. Use as `async with`."""
        auth = TokenAuth(token_id=endpoint.token_id, secret=endpoint.token_secret)
        return ProxmoxClient(
            endpoint.base_url,
            auth,
            tls=endpoint.tls_policy,
            timeout=timeout,
            retries=retries,
            event_hooks=proxmox_event_hooks(),
            resolver=self.resolve_api,
        )

    def runner(self, endpoint: "NodeEndpoint", *, connect_timeout: float = 10.0) -> "PctExecRunner":
        """An SSH runner for `pct` on the node, pinned to its stored host key; without one, the first key seen is
        pinned for every later connection by any path."""
        from infrahaus_proxmox.pct import PctExecRunner  # loads asyncssh: only a process that uses SSH pays for it

        target = SshTarget(
            host=endpoint.ssh_host,
            port=endpoint.ssh_port,
            username=endpoint.ssh_username,
            password=endpoint.ssh_password,
            private_key=endpoint.ssh_private_key,
            host_key=endpoint.ssh_host_key,
        )
        pins = self.pins
        on_host_key = None
        if pins is not None and endpoint.node_id is not None:

            async def on_host_key(key: str) -> None:
                await pins.pin(endpoint, key)

        return PctExecRunner(
            target, connect_timeout=connect_timeout, resolver=self.resolve_ssh, on_host_key=on_host_key
        )

    async def resolve_api(self, host: str, port: int) -> str:
        """The checked address of a node's API (`OutboundDeniedError` before anything is sent)."""
        try:
            return await self.policy.resolve(host, port)
        except UnresolvableHostError as exc:
            raise ProxmoxUnreachable(f"cannot connect to {host}:{port}: {exc}") from None

    async def resolve_ssh(self, host: str, port: int) -> str:
        """The checked address of a node's SSH service."""
        try:
            return await self.policy.resolve(host, port)
        except UnresolvableHostError as exc:
            raise SshUnreachable(f"cannot reach SSH on {host}:{port}: {exc}") from None


def ssh_key_errors(private_key: str | None, host_key: str | None) -> list[FieldError]:
    """Field errors for SSH keys the runner could not use (checked without connecting; messages quote no key)."""
    from infrahaus_proxmox.pct import PctExecRunner  # see `NodeAccess.runner`

    errors: list[FieldError] = []
    if private_key is not None:
        try:
            PctExecRunner(SshTarget(host="-", private_key=private_key))
        except ValueError:
            errors.append(
                FieldError(field="ssh_private_key", message="Not a readable private key (it must be unencrypted).")
            )
    if host_key is not None:
        try:
            PctExecRunner(SshTarget(host="-", host_key=host_key))
        except ValueError:
            errors.append(
                FieldError(field="ssh_host_key", message="Not an OpenSSH public key line (`ssh-ed25519 AAAA…`).")
            )
    return errors


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


async def check_api(access: NodeAccess, endpoint: NodeEndpoint, *, request_timeout: float = 10.0) -> ApiCheck:
    """The connection test run before a node is saved: version, the token's effective privileges (every one it lacks
    for what infrahaus does is named with its path: `MissingPrivilegesError`), then the node's status.

    Detects `pve_node` when the endpoint has none. Raises the node domain errors; `OutboundDeniedError` before anything
    is sent to a refused address, and `NotAProxmoxNodeError` (never echoing the server) when the address answers
    unlike Proxmox.
    """
    with node_errors(endpoint):
        async with access.client(endpoint, timeout=request_timeout) as client:
            started = time.perf_counter()
            try:
                version = await client.version()
            except ProxmoxError as exc:
                if (refused := not_a_proxmox_node(exc)) is not None:
                    raise refused from None
                raise
            latency_ms = (time.perf_counter() - started) * 1000
            pve_node = endpoint.pve_node or await _detect_pve_node(client)
            missing = await node_missing_privileges(client, pve_node)
            if missing:
                raise MissingPrivilegesError(missing, describe(missing))
            await client.nodes.status(pve_node)
    return ApiCheck(version=version.version, pve_node=pve_node, latency_ms=round(latency_ms, 2))


async def probe_certificate(access: NodeAccess, host: str, port: int, *, timeout: float = 10.0) -> CertificateInfo:  # noqa: ASYNC109
    """The certificate of a would-be node, once its address passed the outbound policy and it answered like
    Proxmox: an anonymous `GET /version` must be refused with 401, as pveproxy does. Anything else is
    `NotAProxmoxNodeError`, which repeats nothing of what the server said."""
    try:
        address = await access.resolve_api(host, port)
        info = await fetch_certificate(host, port, timeout=timeout, address=address)
        base_url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        client = ProxmoxClient(
            base_url,
            None,
            tls=TlsPolicy.pinned(info.fingerprint_sha256),
            timeout=timeout,
            retries=0,
            resolver=access.resolve_api,
        )
        async with client:
            await client.version()
    except ProxmoxAuthError:
        return info
    except ProxmoxError as exc:
        raise (not_a_proxmox_node(exc) or domain_error(exc, pinned=False)) from None
    # An HTTPS server that answers /version without credentials is not a Proxmox node.
    raise NotAProxmoxNodeError("The server at this address did not answer like a Proxmox VE node.")


async def _detect_pve_node(client: ProxmoxClient) -> str:
    names = sorted(summary.node for summary in await client.nodes.list())
    if len(names) == 1:
        return names[0]
    message = f"the cluster has several nodes ({', '.join(names)}); name one" if names else "the node lists no nodes"
    raise ValidationFailed([FieldError(field="pve_node", message=message)])
