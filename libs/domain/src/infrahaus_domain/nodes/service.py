"""The node registry: CRUD with a connection test before anything is saved, and read-through helpers.

Proxmox is always called before the first write of a method, so no write transaction is held open
across a request to a node.
"""

import asyncio
import base64
import binascii
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import DomainError, FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import (
    NodeEndpoint,
    check_api,
    domain_error,
    node_errors,
    pct_runner,
    proxmox_client,
    ssh_key_errors,
)
from infrahaus_domain.nodes.errors import NodeHasContainersError, NodeNameTakenError
from infrahaus_domain.nodes.schemas import (
    ApiTestResult,
    BridgeRead,
    CertificateRead,
    NodeCreate,
    NodePage,
    NodeProbe,
    NodeRead,
    NodeStatusRead,
    NodeTestResult,
    NodeUpdate,
    OsTemplateRead,
    SshTestResult,
    StorageRead,
    Usage,
)
from infrahaus_proxmox import fetch_certificate, normalize_fingerprint
from infrahaus_proxmox.errors import ProxmoxError
from infrahaus_proxmox.pct import SshAuthError, SshError, SshHostKeyMismatch, SshUnreachable

# Changing any of these points the node's API somewhere else (or authenticates differently): re-test.
_API_FIELDS = ("host", "port", "pve_node", "token_id", "token_secret", "tls_verify", "tls_fingerprint")


class NodeRepository(SQLAlchemyAsyncRepository[Node]):
    model_type = Node


class NodeService(SQLAlchemyAsyncRepositoryService[Node, NodeRepository]):
    """Nodes of one user at a time: every method takes the caller's `user_id` and hides other users' nodes."""

    repository_type = NodeRepository

    def __init__(self, session: AsyncSession, *, box: SecretBox, api_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.box = box
        self.api_timeout = api_timeout

    @property
    def session(self) -> AsyncSession:
        session: AsyncSession = self.repository.session  # type: ignore[assignment]
        return session

    # ------------------------------------------------------------------ reads

    async def get_owned(self, user_id: uuid.UUID, node_id: uuid.UUID) -> Node:
        """The caller's node; another user's node is reported exactly like a missing one."""
        node = await self.session.scalar(select(Node).where(Node.id == node_id, Node.user_id == user_id))
        if node is None:
            raise NotFoundError("Node not found.")
        return node

    async def get_default(self, user_id: uuid.UUID) -> Node | None:
        """The caller's default node, if it has any node."""
        result: Node | None = await self.session.scalar(
            select(Node).where(Node.user_id == user_id, Node.is_default.is_(True))
        )
        return result

    def endpoint(self, node: Node) -> NodeEndpoint:
        """The node's connection settings with decrypted secrets, for building a ProxmoxClient or PctExecRunner."""
        return NodeEndpoint.from_node(node, self.box)

    async def container_counts(self, node_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many containers each node holds: the one definition used by reads and by delete."""
        if not node_ids:
            return {}
        rows = await self.session.execute(
            select(Container.node_id, func.count()).where(Container.node_id.in_(node_ids)).group_by(Container.node_id)
        )
        counts = {node_id: 0 for node_id in node_ids}
        counts.update({node_id: count for node_id, count in rows.all()})
        return counts

    async def read(self, node: Node) -> NodeRead:
        counts = await self.container_counts([node.id])
        return _to_read(node, counts[node.id])

    async def list_page(self, user_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None) -> NodePage:
        """One page of the caller's nodes in creation order (ids are UUIDv7, so ordering by id is by age)."""
        query = select(Node).where(Node.user_id == user_id).order_by(Node.id).limit(limit + 1)
        if cursor is not None:
            query = query.where(Node.id > _decode_cursor(cursor))
        nodes = list(await self.session.scalars(query))
        next_cursor = _encode_cursor(nodes[limit - 1].id) if len(nodes) > limit else None
        nodes = nodes[:limit]
        counts = await self.container_counts([n.id for n in nodes])
        return NodePage(items=[_to_read(n, counts[n.id]) for n in nodes], next_cursor=next_cursor)

    # ------------------------------------------------------------------ writes

    async def create_node(self, user_id: uuid.UUID, data: NodeCreate) -> NodeRead:
        """Test the connection, then save the node (the user's first node becomes the default)."""
        fingerprint = _normalize_fingerprint(data.tls_fingerprint)
        if errors := ssh_key_errors(data.ssh_private_key, data.ssh_host_key):
            raise ValidationFailed(errors)
        endpoint = NodeEndpoint(
            host=data.host,
            port=data.port,
            pve_node=data.pve_node,
            token_id=data.token_id,
            token_secret=data.token_secret,
            tls_verify=data.tls_verify,
            tls_fingerprint=fingerprint,
            ssh_host=data.ssh_host or data.host,
            ssh_port=data.ssh_port,
            ssh_username=data.ssh_username,
        )
        await self._ensure_name_free(user_id, data.name)
        check = await check_api(endpoint, request_timeout=self.api_timeout)
        has_nodes = await self.session.scalar(select(func.count()).select_from(Node).where(Node.user_id == user_id))
        node = Node(
            user_id=user_id,
            name=data.name,
            host=data.host,
            port=data.port,
            pve_node=check.pve_node,
            token_id=data.token_id,
            token_secret=self.box.encrypt(data.token_secret),
            tls_verify=data.tls_verify,
            tls_fingerprint=fingerprint,
            ssh_host=data.ssh_host,
            ssh_port=data.ssh_port,
            ssh_username=data.ssh_username,
            ssh_password=self._encrypt(data.ssh_password),
            ssh_private_key=self._encrypt(data.ssh_private_key),
            ssh_host_key=data.ssh_host_key,
            is_default=not has_nodes,
        )
        self.session.add(node)
        await self.session.flush()
        return _to_read(node, 0)

    async def update_node(self, user_id: uuid.UUID, node_id: uuid.UUID, data: NodeUpdate) -> NodeRead:
        """Apply a partial update; a changed API endpoint, token or TLS setting is re-tested before saving."""
        node = await self.get_owned(user_id, node_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        if "tls_fingerprint" in changes:
            changes["tls_fingerprint"] = _normalize_fingerprint(changes["tls_fingerprint"])
        if errors := ssh_key_errors(changes.get("ssh_private_key"), changes.get("ssh_host_key")):
            raise ValidationFailed(errors)
        if "name" in changes and changes["name"] != node.name:
            await self._ensure_name_free(user_id, changes["name"])
        current = self.endpoint(node)
        retest = any(f in changes and changes[f] != getattr(current, f) for f in _API_FIELDS)
        pve_node = node.pve_node
        if retest:
            endpoint = NodeEndpoint(
                host=changes.get("host", node.host),
                port=changes.get("port", node.port),
                pve_node=changes.get("pve_node", node.pve_node),
                token_id=changes.get("token_id", node.token_id),
                token_secret=changes.get("token_secret", current.token_secret),
                tls_verify=changes.get("tls_verify", node.tls_verify),
                tls_fingerprint=changes.get("tls_fingerprint", node.tls_fingerprint),
                ssh_host=current.ssh_host,
                ssh_port=current.ssh_port,
                ssh_username=current.ssh_username,
            )
            pve_node = (await check_api(endpoint, request_timeout=self.api_timeout)).pve_node
        old_ssh = (node.effective_ssh_host, node.ssh_port)
        for field in ("name", "host", "port", "token_id", "tls_verify", "tls_fingerprint", "ssh_host", "ssh_port"):
            if field in changes:
                setattr(node, field, changes[field])
        if "ssh_username" in changes:
            node.ssh_username = changes["ssh_username"]
        node.pve_node = pve_node
        if "token_secret" in changes:
            node.token_secret = self.box.encrypt(changes["token_secret"])
        if "ssh_password" in changes:
            node.ssh_password = self._encrypt(changes["ssh_password"])
        if "ssh_private_key" in changes:
            node.ssh_private_key = self._encrypt(changes["ssh_private_key"])
        if "ssh_host_key" in changes:
            node.ssh_host_key = changes["ssh_host_key"]
        elif (node.effective_ssh_host, node.ssh_port) != old_ssh:
            # The pinned key belonged to the old SSH endpoint: trust the new one on first use again.
            node.ssh_host_key = None
        await self.session.flush()
        return await self.read(node)

    async def delete_node(self, user_id: uuid.UUID, node_id: uuid.UUID) -> None:
        """Delete a node without containers; if it was the default, the oldest remaining node becomes default."""
        node = await self.get_owned(user_id, node_id)
        count = (await self.container_counts([node.id]))[node.id]
        if count:
            raise NodeHasContainersError(f"The node still has {count} container(s); delete them first.")
        was_default = node.is_default
        await self.session.delete(node)
        # The delete must reach the database before another row claims the one default slot.
        await self.session.flush()
        if was_default:
            successor = await self.session.scalar(
                select(Node).where(Node.user_id == user_id).order_by(Node.id).limit(1)
            )
            if successor is not None:
                successor.is_default = True
                await self.session.flush()

    async def set_default(self, user_id: uuid.UUID, node_id: uuid.UUID) -> NodeRead:
        """Make this node the caller's default."""
        node = await self.get_owned(user_id, node_id)
        if not node.is_default:
            previous = await self.get_default(user_id)
            if previous is not None:
                previous.is_default = False
                # Clear the old default first: the partial unique index allows one default per user.
                await self.session.flush()
            node.is_default = True
            await self.session.flush()
        return await self.read(node)

    # ------------------------------------------------------------------ talking to nodes

    async def probe(self, data: NodeProbe) -> CertificateRead:
        """The TLS certificate a host presents, so a client can show its fingerprint and pin it."""
        try:
            info = await fetch_certificate(data.host, data.port, timeout=self.api_timeout)
        except ProxmoxError as exc:
            raise domain_error(exc, pinned=False) from exc
        return CertificateRead(
            fingerprint_sha256=info.fingerprint_sha256,
            subject=info.subject,
            issuer=info.issuer,
            not_after=info.not_after,
        )

    async def test_node(self, user_id: uuid.UUID, node_id: uuid.UUID) -> NodeTestResult:
        """Check the API and SSH access of a saved node; pins the SSH host key on the first success."""
        node = await self.get_owned(user_id, node_id)
        endpoint = self.endpoint(node)
        api, (ssh, seen_host_key) = await asyncio.gather(self._test_api(endpoint), self._test_ssh(endpoint))
        if ssh.ok and node.ssh_host_key is None and seen_host_key:
            node.ssh_host_key = seen_host_key
            await self.session.flush()
        return NodeTestResult(api=api, ssh=ssh)

    async def status(self, user_id: uuid.UUID, node_id: uuid.UUID) -> NodeStatusRead:
        endpoint = self.endpoint(await self.get_owned(user_id, node_id))
        with node_errors(endpoint):
            async with proxmox_client(endpoint, timeout=self.api_timeout) as client:
                status = await client.nodes.status(endpoint.require_pve_node())
        return NodeStatusRead(
            cpu=status.cpu,
            cpus=status.cpuinfo.cpus or None,
            memory=Usage(total=status.memory.total, used=status.memory.used),
            disk=Usage(total=status.rootfs.total, used=status.rootfs.used),
            uptime=status.uptime,
            pve_version=status.pveversion,
            kernel_version=status.kversion or None,
        )

    async def storages(self, user_id: uuid.UUID, node_id: uuid.UUID, content: str | None = None) -> list[StorageRead]:
        endpoint = self.endpoint(await self.get_owned(user_id, node_id))
        with node_errors(endpoint):
            async with proxmox_client(endpoint, timeout=self.api_timeout) as client:
                storages = await client.storage.list(endpoint.require_pve_node(), content=content)
        return [
            StorageRead(
                storage=s.storage,
                type=s.type,
                content=sorted(s.content),
                total=s.total,
                used=s.used,
                avail=s.avail,
                active=s.active,
                enabled=s.enabled,
            )
            for s in sorted(storages, key=lambda s: s.storage)
        ]

    async def os_templates(self, user_id: uuid.UUID, node_id: uuid.UUID) -> list[OsTemplateRead]:
        """Container images (`vztmpl` volumes) across all active storages of the node."""
        endpoint = self.endpoint(await self.get_owned(user_id, node_id))
        pve_node = endpoint.require_pve_node()
        with node_errors(endpoint):
            async with proxmox_client(endpoint, timeout=self.api_timeout) as client:
                storages = [s for s in await client.storage.list(pve_node, content="vztmpl") if s.active]
                volumes = await asyncio.gather(
                    *(client.storage.content(pve_node, s.storage, content="vztmpl") for s in storages)
                )
        return sorted(
            (
                OsTemplateRead(volid=v.volid, name=v.volid.rsplit("/", 1)[-1], storage=s.storage, size=v.size)
                for s, vols in zip(storages, volumes, strict=True)
                for v in vols
            ),
            key=lambda t: t.volid,
        )

    async def bridges(self, user_id: uuid.UUID, node_id: uuid.UUID) -> list[BridgeRead]:
        endpoint = self.endpoint(await self.get_owned(user_id, node_id))
        with node_errors(endpoint):
            async with proxmox_client(endpoint, timeout=self.api_timeout) as client:
                interfaces = await client.nodes.network(endpoint.require_pve_node(), type="bridge")
        return [
            BridgeRead(iface=i.iface, cidr=i.cidr, active=i.active) for i in sorted(interfaces, key=lambda i: i.iface)
        ]

    # ------------------------------------------------------------------ helpers

    async def _test_api(self, endpoint: NodeEndpoint) -> ApiTestResult:
        try:
            check = await check_api(endpoint, request_timeout=self.api_timeout)
        except DomainError as exc:
            return ApiTestResult(ok=False, error=exc.detail, code=exc.code)
        return ApiTestResult(ok=True, version=check.version, latency_ms=check.latency_ms)

    async def _test_ssh(self, endpoint: NodeEndpoint) -> tuple[SshTestResult, str | None]:
        if endpoint.ssh_password is None and endpoint.ssh_private_key is None:
            result = SshTestResult(
                ok=False, error="No SSH password or private key is configured.", code="ssh_not_configured"
            )
            return result, None
        try:
            runner = pct_runner(endpoint, connect_timeout=self.api_timeout)
        except ValueError:
            # Keys are checked when saved; this only guards keys stored before that check existed.
            return SshTestResult(ok=False, error="The stored SSH key cannot be read.", code="ssh_key_invalid"), None
        started = time.perf_counter()
        try:
            host_key = await runner.connect()
        except SshError as exc:
            return SshTestResult(ok=False, error=str(exc), code=_ssh_code(exc)), None
        finally:
            await runner.aclose()
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return SshTestResult(ok=True, latency_ms=latency_ms), host_key

    async def _ensure_name_free(self, user_id: uuid.UUID, name: str) -> None:
        taken = await self.session.scalar(select(Node.id).where(Node.user_id == user_id, Node.name == name))
        if taken is not None:
            raise NodeNameTakenError(f"You already have a node named {name!r}.")

    def _encrypt(self, secret: str | None) -> str | None:
        return self.box.encrypt(secret) if secret is not None else None


def _ssh_code(exc: SshError) -> str:
    if isinstance(exc, SshHostKeyMismatch):
        return "ssh_host_key_mismatch"
    if isinstance(exc, SshAuthError):
        return "ssh_auth_failed"
    if isinstance(exc, SshUnreachable):
        return "ssh_unreachable"
    return "ssh_error"


def _normalize_fingerprint(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_fingerprint(value)
    except ValueError as exc:
        raise ValidationFailed([FieldError(field="tls_fingerprint", message=str(exc))]) from None


def _encode_cursor(node_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(node_id.bytes).decode().rstrip("=")


def _decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise ValidationFailed([FieldError(field="cursor", message="not a cursor from this list")]) from None


def _to_read(node: Node, container_count: int) -> NodeRead:
    return NodeRead(
        id=node.id,
        name=node.name,
        host=node.host,
        port=node.port,
        pve_node=node.pve_node,
        token_id=node.token_id,
        tls_verify=node.tls_verify,
        tls_fingerprint=node.tls_fingerprint,
        ssh_host=node.effective_ssh_host,
        ssh_port=node.ssh_port,
        ssh_username=node.ssh_username,
        ssh_host_key=node.ssh_host_key,
        is_default=node.is_default,
        has_token_secret=bool(node.token_secret),
        has_ssh_password=node.ssh_password is not None,
        has_ssh_private_key=node.ssh_private_key is not None,
        container_count=container_count,
        created_at=node.created_at,
        updated_at=node.updated_at,
    )
