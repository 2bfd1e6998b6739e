"""The node registry: CRUD with a connection test before anything is saved, and read-through helpers.

Proxmox is always called before the first write of a method, so no write transaction is held open
across a request to a node.
"""

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import Boolean, Integer, Select, bindparam, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.errors import DomainError, FieldError, NotFoundError, RateLimited, ValidationFailed
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import (
    NodeAccess,
    NodeEndpoint,
    check_api,
    node_errors,
    probe_certificate,
    ssh_key_errors,
)
from infrahaus_domain.nodes.errors import (
    MissingPrivilegesError,
    NodeHasContainersError,
    NodeNameTakenError,
    SecretsRequiredError,
)
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
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.ports import Cache
from infrahaus_domain.proxmox_errors import ssh_error_code
from infrahaus_domain.reads import to_read
from infrahaus_domain.service_base import DomainService
from infrahaus_proxmox import normalize_fingerprint
from infrahaus_proxmox.ssh_types import SshError

# Changing any of these points the node's API somewhere else (or authenticates differently): re-test.
_API_FIELDS = ("host", "port", "pve_node", "token_id", "token_secret", "tls_verify", "tls_fingerprint")
# Changing any of these may send requests to another server: the token secret must be sent again with them.
_API_ENDPOINT_FIELDS = ("host", "port", "tls_verify", "tls_fingerprint")


class NodeRepository(SQLAlchemyAsyncRepository[Node]):
    model_type = Node


class NodeService(DomainService[Node, NodeRepository]):
    """Nodes of one user at a time: every method takes the caller's `user_id` and hides other users' nodes."""

    repository_type = NodeRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        access: NodeAccess,
        cache: Cache | None = None,
        check_limit: int = 30,
        check_window: int = 60,
        api_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(session, **kwargs)
        self.access = access
        self.box = access.box
        self.cache = cache
        self.check_limit = check_limit
        self.check_window = check_window
        self.api_timeout = api_timeout

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
        return self.access.endpoint(node)

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
        """One page of the caller's nodes in creation order (ids are UUIDv7, so ordering by id is by age).

        One statement (counts included) whose rows become `NodeRead` directly: no ORM objects on the hot path."""
        after = decode_cursor(cursor, tuple[uuid.UUID])[0] if cursor is not None else None
        statement = _NODE_LIST_AFTER if after is not None else _NODE_LIST
        connection = await self.session.connection()  # Core: no ORM work for rows that are not entities
        rows = (await connection.execute(statement, {"user_id": user_id, "limit": limit + 1, "after": after})).all()
        next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
        return NodePage(
            items=msgspec.convert(rows[:limit], list[NodeRead], from_attributes=True), next_cursor=next_cursor
        )

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
        await self._count_check(user_id)
        check = await check_api(self.access, endpoint, request_timeout=self.api_timeout)
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
        ssh_moved = self._require_secrets(node, current, changes)
        retest = any(f in changes and changes[f] != getattr(current, f) for f in _API_FIELDS)
        pve_node = node.pve_node
        if retest or ssh_moved:
            await self._count_check(user_id)
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
            pve_node = (await check_api(self.access, endpoint, request_timeout=self.api_timeout)).pve_node
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

    async def probe(self, user_id: uuid.UUID, data: NodeProbe) -> CertificateRead:
        """The TLS certificate a Proxmox node presents, so a client can show its fingerprint and pin it (the address
        must pass the outbound policy, and the server must answer like Proxmox)."""
        await self._count_check(user_id)
        info = await probe_certificate(self.access, data.host, data.port, timeout=self.api_timeout)
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
        await self._count_check(user_id)
        await self.end_read()
        # A first SSH success pins the host key itself (`NodeAccess.runner`), as on every other path.
        api, ssh = await asyncio.gather(self._test_api(endpoint), self._test_ssh(endpoint))
        return NodeTestResult(api=api, ssh=ssh)

    async def status(self, user_id: uuid.UUID, node_id: uuid.UUID) -> NodeStatusRead:
        endpoint = self.endpoint(await self.get_owned(user_id, node_id))
        with node_errors(endpoint):
            async with self.access.client(endpoint, timeout=self.api_timeout) as client:
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
            async with self.access.client(endpoint, timeout=self.api_timeout) as client:
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
            async with self.access.client(endpoint, timeout=self.api_timeout) as client:
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
            async with self.access.client(endpoint, timeout=self.api_timeout) as client:
                interfaces = await client.nodes.network(endpoint.require_pve_node(), type="bridge")
        return [
            BridgeRead(iface=i.iface, cidr=i.cidr, active=i.active) for i in sorted(interfaces, key=lambda i: i.iface)
        ]

    # ------------------------------------------------------------------ helpers

    async def _test_api(self, endpoint: NodeEndpoint) -> ApiTestResult:
        try:
            check = await check_api(self.access, endpoint, request_timeout=self.api_timeout)
        except MissingPrivilegesError as exc:
            return ApiTestResult(ok=False, error=exc.detail, code=exc.code, missing_privileges=exc.missing)
        except DomainError as exc:
            return ApiTestResult(ok=False, error=exc.detail, code=exc.code)
        return ApiTestResult(ok=True, version=check.version, latency_ms=check.latency_ms)

    async def _test_ssh(self, endpoint: NodeEndpoint) -> SshTestResult:
        if endpoint.ssh_password is None and endpoint.ssh_private_key is None:
            return SshTestResult(
                ok=False, error="No SSH password or private key is configured.", code="ssh_not_configured"
            )
        try:
            runner = self.access.runner(endpoint, connect_timeout=self.api_timeout)
        except ValueError:
            # Keys are checked when saved; this only guards keys stored before that check existed.
            return SshTestResult(ok=False, error="The stored SSH key cannot be read.", code="ssh_key_invalid")
        started = time.perf_counter()
        try:
            await runner.connect()
        except SshError as exc:
            return SshTestResult(ok=False, error=str(exc), code=ssh_error_code(exc))
        except DomainError as exc:  # the outbound policy refused the SSH address
            return SshTestResult(ok=False, error=exc.detail, code=exc.code)
        finally:
            await runner.aclose()
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return SshTestResult(ok=True, latency_ms=latency_ms)

    def _require_secrets(self, node: Node, current: NodeEndpoint, changes: dict[str, Any]) -> bool:
        """Raise `SecretsRequiredError` when the API or SSH endpoint changes without the secrets that belong to it
        in the same request (the stored ones were given for the old endpoint and are never sent to another).
        Returns whether the SSH endpoint changes."""
        missing: list[FieldError] = []
        api_moved = any(f in changes and changes[f] != getattr(current, f) for f in _API_ENDPOINT_FIELDS)
        if api_moved and "token_secret" not in changes:
            missing.append(
                FieldError(field="token_secret", message="send it again: the node's address or TLS settings change")
            )
        new_ssh = (
            changes.get("ssh_host", node.ssh_host) or changes.get("host", node.host),
            changes.get("ssh_port", node.ssh_port),
        )
        ssh_moved = new_ssh != (node.effective_ssh_host, node.ssh_port)
        if ssh_moved:
            for field, stored in (("ssh_password", node.ssh_password), ("ssh_private_key", node.ssh_private_key)):
                if stored is not None and field not in changes:
                    missing.append(
                        FieldError(field=field, message="send it again (or null): the node's SSH address changes")
                    )
        if missing:
            raise SecretsRequiredError(missing)
        return ssh_moved

    async def _count_check(self, user_id: uuid.UUID) -> None:
        """Count one probe, registration, connection test or endpoint change of the user: each makes the server
        connect somewhere, so they are limited per user (`RateLimited` beyond the limit)."""
        if self.cache is None:
            return
        counter = f"node-checks:{user_id}"
        if await self.cache.incr(counter, ttl=self.check_window) > self.check_limit:
            remaining = await self.cache.ttl(counter)
            raise RateLimited(
                int(remaining or self.check_window) + 1,
                "Too many node checks (probe, register, test); try again later.",
            )

    async def _ensure_name_free(self, user_id: uuid.UUID, name: str) -> None:
        taken = await self.session.scalar(select(Node.id).where(Node.user_id == user_id, Node.name == name))
        if taken is not None:
            raise NodeNameTakenError(f"You already have a node named {name!r}.")

    def _encrypt(self, secret: str | None) -> str | None:
        return self.box.encrypt(secret) if secret is not None else None


def _normalize_fingerprint(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_fingerprint(value)
    except ValueError as exc:
        raise ValidationFailed([FieldError(field="tls_fingerprint", message=str(exc))]) from None


def node_list_statement(user_id: uuid.UUID, *, limit: int, after: uuid.UUID | None) -> Select[Any]:
    """The caller's nodes after `after` (by id), each row carrying every `NodeRead` field by name (the statement
    `list_page` runs, with its values bound)."""
    statement = _NODE_LIST_AFTER if after is not None else _NODE_LIST
    return statement.params(user_id=user_id, limit=limit, after=after)


def _node_list(*, paged: bool) -> Select[Any]:
    # Built once: constructing a statement costs more than the database takes to run it.
    count = select(func.count()).where(Container.node_id == Node.id).correlate(Node).scalar_subquery()
    query = (
        select(
            *(getattr(Node, name) for name in _NODE_READ_COLUMNS),
            func.coalesce(Node.ssh_host, Node.host).label("ssh_host"),
            type_coerce(Node.token_secret != "", Boolean).label("has_token_secret"),
            type_coerce(Node.ssh_password.is_not(None), Boolean).label("has_ssh_password"),
            type_coerce(Node.ssh_private_key.is_not(None), Boolean).label("has_ssh_private_key"),
            count.label("container_count"),
        )
        .where(Node.user_id == bindparam("user_id"))
        .order_by(Node.id)
        .limit(bindparam("limit", type_=Integer))
    )
    return query.where(Node.id > bindparam("after", type_=Node.id.type)) if paged else query


# `NodeRead` fields that are plain columns of `nodes`; the others are computed in `node_list_statement`.
_NODE_READ_COLUMNS = tuple(
    name
    for name in NodeRead.__struct_fields__
    if name not in {"ssh_host", "has_token_secret", "has_ssh_password", "has_ssh_private_key", "container_count"}
)


_NODE_LIST = _node_list(paged=False)
_NODE_LIST_AFTER = _node_list(paged=True)


def _to_read(node: Node, container_count: int) -> NodeRead:
    return to_read(
        node,
        NodeRead,
        ssh_host=node.effective_ssh_host,
        has_token_secret=bool(node.token_secret),
        has_ssh_password=node.ssh_password is not None,
        has_ssh_private_key=node.ssh_private_key is not None,
        container_count=container_count,
    )
