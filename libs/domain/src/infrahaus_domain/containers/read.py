"""Containers, read side: the live list, summary and detail, discovered services, credential reveals, service logs.

Database rows are merged with each node's live state (`LiveInventory`). A node that cannot be read never fails a
read: its containers show `status: unknown` and the node is listed in `unreachable_nodes`.

The list is ordered newest first by `(created_at, id)`, a total order, and a cursor is the position of the last
item returned, so pages never repeat or skip a container that existed when the first page was read (containers
created meanwhile sort before the cursor and show up on a fresh first page). The `status` filter applies to the
live status after the merge: a page holds up to `limit` matching containers and the next page continues after the
last one returned.
"""

import asyncio
import base64
import binascii
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
from sqlalchemy import ColumnElement, Select, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.containers.errors import InvalidStateError
from infrahaus_domain.containers.inventory import LiveInventory, NodeReadError, NodeSnapshot
from infrahaus_domain.containers.read_schemas import (
    ConfigUnavailable,
    ContainerAction,
    ContainerConfig,
    ContainerDetail,
    ContainerPage,
    ContainerRead,
    ContainerSummary,
    ContainerUsage,
    CredentialsRead,
    FeaturesRead,
    LiveStatus,
    NetworkRead,
    NodeCount,
    RootfsRead,
    ServiceList,
    ServiceLogs,
    ServiceRead,
    UnreachableNode,
)
from infrahaus_domain.containers.schemas import ContainerSpec, NamedRef
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import FieldError, NotFoundError, RateLimited, ValidationFailed
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import (
    ACTIVE_STATUSES,
    LIFECYCLES,
    Container,
    DiscoveredService,
    Operation,
    ServiceCredential,
)
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.models.templates import Template
from infrahaus_domain.nodes.connection import NodeEndpoint, pct_runner
from infrahaus_domain.nodes.errors import NodeRequestError, NodeUnreachableError
from infrahaus_domain.operations.service import to_operation_read
from infrahaus_domain.ports import Cache
from infrahaus_domain.templates.validation import UnsafeValueError, validate_unit_name
from infrahaus_proxmox.errors import ProxmoxNotFound
from infrahaus_proxmox.models import LxcConfig
from infrahaus_proxmox.pct import PctNotRunning, PctTimeout, SshError, SshUnreachable

HTTPS_PORTS = frozenset({443, 8443, 9443})
HTTP_PORTS = frozenset({80, 3000, 3001, 5000, 5601, 8000, 8008, 8080, 8081, 8088, 8888, 9000, 9090, 19999})
MAX_LOG_LINES = 1000
_SCAN_BATCH = 200
_LOG_TIMEOUT = 20.0
_STATUSES: tuple[LiveStatus, ...] = ("running", "stopped", "paused", "unknown")


class _Row(NamedTuple):
    """The columns the list shows (plain rows: no ORM identity map or instrumentation for hundreds of items)."""

    id: UUID
    node_id: UUID
    vmid: int
    hostname: str
    template_id: UUID | None
    lifecycle: str
    ip_address: str | None
    created_at: datetime
    updated_at: datetime
    node_name: str
    template_name: str | None


_ROW_COLUMNS = (
    Container.id,
    Container.node_id,
    Container.vmid,
    Container.hostname,
    Container.template_id,
    Container.lifecycle,
    Container.ip_address,
    Container.created_at,
    Container.updated_at,
    Node.name.label("node_name"),
    Template.name.label("template_name"),
)


class ContainerFilters(msgspec.Struct, kw_only=True, frozen=True):
    """Filters of the list; `q` matches the hostname (substring, any case), the VMID or the IP address."""

    node_id: UUID | None = None
    lifecycle: str | None = None
    status: LiveStatus | None = None
    template_id: UUID | None = None
    q: str | None = None


class ContainerReadService:
    """Read-side queries over the caller's containers. The session must not expire objects on commit: reads end
    their transaction before calling nodes. `reveal_credentials` writes an event; the caller commits it."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        inventory: LiveInventory,
        box: SecretBox,
        events: EventService,
        cache: Cache,
        reveal_limit: int = 30,
        reveal_window: int = 60,
    ) -> None:
        self.session = session
        self.inventory = inventory
        self.box = box
        self.events = events
        self.cache = cache
        self.reveal_limit = reveal_limit
        self.reveal_window = reveal_window

    # ------------------------------------------------------------------ list, summary

    async def page(
        self, user_id: UUID, filters: ContainerFilters, *, limit: int = 50, cursor: str | None = None
    ) -> ContainerPage:
        """One page of the caller's containers merged with live state (see the module docstring for ordering)."""
        position = _decode_cursor(cursor) if cursor is not None else None
        nodes = await self._nodes(user_id, filters.node_id)
        stmt = self._select(user_id, filters)
        # The nodes are asked while the database is read; the read transaction ends before waiting for them.
        fetch = asyncio.create_task(self.inventory.snapshots(nodes))
        try:
            if filters.status is None:
                picked = await self._rows(stmt, position, limit + 1)
                active = await self._active([row.id for row in picked[:limit]])
                await self._end_read()
                snapshots = await fetch
            else:
                await self._end_read()
                snapshots = await fetch
                picked = await self._scan(stmt, position, limit, filters.status, snapshots)
                active = await self._active([row.id for row in picked[:limit]])
        finally:
            fetch.cancel()
        more = len(picked) > limit
        picked = picked[:limit]
        last = picked[-1] if picked else None
        return ContainerPage(
            items=_items(picked, snapshots, active),
            next_cursor=_encode_cursor(last.created_at, last.id) if more and last is not None else None,
            unreachable_nodes=_unreachable(nodes, snapshots),
        )

    async def _rows(
        self, stmt: Select[*tuple[Any, ...]], position: tuple[datetime, UUID] | None, count: int
    ) -> list[_Row]:
        if position is not None:
            stmt = stmt.where(tuple_(Container.created_at, Container.id) < position)
        return [_Row(*row) for row in await self.session.execute(stmt.limit(count))]

    async def _scan(
        self,
        stmt: Select[*tuple[Any, ...]],
        position: tuple[datetime, UUID] | None,
        limit: int,
        status: str,
        snapshots: dict[UUID, NodeSnapshot],
    ) -> list[_Row]:
        """Rows in list order whose live status matches, until `limit` + 1 matches (to know whether another page
        exists) or the end."""
        picked: list[_Row] = []
        batch = max(limit + 1, _SCAN_BATCH)
        while True:
            rows = await self._rows(stmt, position, batch)
            for row in rows:
                if _status(snapshots, row) == status:
                    picked.append(row)
                    if len(picked) > limit:
                        return picked
            if len(rows) < batch:
                return picked
            position = (rows[-1].created_at, rows[-1].id)

    async def summary(self, user_id: UUID) -> ContainerSummary:
        """Counts over every container of the caller: by lifecycle, by live status, per node."""
        nodes = await self._nodes(user_id, None)
        await self._end_read()
        snapshots = await self.inventory.snapshots(nodes)
        rows = await self.session.execute(
            select(Container.node_id, Container.vmid, Container.lifecycle).where(Container.user_id == user_id)
        )
        by_lifecycle: Counter[str] = Counter({lc: 0 for lc in LIFECYCLES})
        by_status: Counter[str] = Counter({st: 0 for st in _STATUSES})
        per_node: dict[UUID, Counter[str]] = {node.id: Counter() for node in nodes}
        for node_id, vmid, lifecycle in rows:
            snap = snapshots.get(node_id)
            status = snap.status_of(vmid) if snap is not None else "unknown"
            by_lifecycle[lifecycle] += 1
            by_status[status] += 1
            per_node.setdefault(node_id, Counter())[status] += 1
        return ContainerSummary(
            total=sum(by_lifecycle.values()),
            by_lifecycle=dict(by_lifecycle),
            by_status=dict(by_status),
            nodes=[
                NodeCount(
                    id=node.id,
                    name=node.name,
                    total=sum(per_node[node.id].values()),
                    by_status=dict(per_node[node.id]),
                    reachable=snapshots[node.id].reachable,
                )
                for node in nodes
            ],
            unreachable_nodes=_unreachable(nodes, snapshots),
        )

    # ------------------------------------------------------------------ detail

    async def detail(self, container_id: UUID, user_id: UUID) -> ContainerDetail:
        """The list item plus the parsed Proxmox config and the creation request; the config is null (with a
        reason in `config_error`) when the node cannot be read or no longer has the container."""
        row = await self._row(container_id, user_id)
        container = await self._owned(container_id, user_id)
        node = await self.session.get(Node, container.node_id)
        if node is None:
            raise NotFoundError("Container not found.")
        active = await self._active([container.id])
        await self._end_read()
        snap, config_result = await asyncio.gather(
            self.inventory.snapshot(node), _config(self.inventory, node, container.vmid)
        )
        [item] = _items([row], {node.id: snap}, active)
        config: ContainerConfig | None = None
        config_error: ConfigUnavailable | None = None
        if isinstance(config_result, NodeReadError):
            config_error = ConfigUnavailable(code=config_result.code, detail=config_result.error)
        else:
            config = _config_read(config_result)
        try:
            request = msgspec.convert(container.request, ContainerSpec) if container.request else None
        except msgspec.ValidationError:
            request = None
        return ContainerDetail(
            **msgspec.structs.asdict(item),
            config=config,
            config_error=config_error,
            request=request,
            last_error=container.last_error,
        )

    # ------------------------------------------------------------------ services

    async def services(self, container_id: UUID, user_id: UUID) -> ServiceList:
        """Discovered services with URLs and whether credentials exist (never their values)."""
        container = await self._owned(container_id, user_id)
        services = (
            await self.session.scalars(
                select(DiscoveredService)
                .where(DiscoveredService.container_id == container.id)
                .order_by(DiscoveredService.is_system, DiscoveredService.name)
            )
        ).all()
        with_credentials = set(
            (
                await self.session.scalars(
                    select(ServiceCredential.service).where(ServiceCredential.container_id == container.id).distinct()
                )
            ).all()
        )
        return ServiceList(
            services=[
                ServiceRead(
                    name=s.name,
                    type=s.type,
                    port=s.port,
                    protocol=s.protocol,
                    status=s.status,
                    is_system=s.is_system,
                    url=service_url(container.ip_address, s.port, s.protocol),
                    has_credentials=s.name in with_credentials,
                )
                for s in services
            ],
            ip_address=container.ip_address,
            discovered_at=container.services_discovered_at,
        )

    async def reveal_credentials(self, container_id: UUID, user_id: UUID, service: str) -> CredentialsRead:
        """Decrypt the service's saved credentials and record a `credentials_viewed` event (keys, never values).

        Rate limited per user: beyond `reveal_limit` reveals in `reveal_window` seconds raises `RateLimited`.
        A service without credentials is a 404 (nothing is recorded).
        """
        container = await self._owned(container_id, user_id)
        counter = f"credentials-reveal:{user_id}"
        if await self.cache.incr(counter, ttl=self.reveal_window) > self.reveal_limit:
            retry_after = await self.cache.ttl(counter)
            raise RateLimited(
                int(retry_after or self.reveal_window) + 1, "Too many credential reveals; try again later."
            )
        rows = (
            await self.session.scalars(
                select(ServiceCredential)
                .where(ServiceCredential.container_id == container.id, ServiceCredential.service == service)
                .order_by(ServiceCredential.key)
            )
        ).all()
        if not rows:
            raise NotFoundError("This service has no saved credentials.")
        values = {row.key: self.box.decrypt(row.value) for row in rows}
        await self.events.record(
            container.id,
            "credentials_viewed",
            f"Credentials of {service} viewed.",
            {"service": service, "keys": sorted(values), "user_id": str(user_id)},
        )
        return CredentialsRead(service=service, credentials=values)

    async def service_logs(self, container_id: UUID, user_id: UUID, service: str, lines: int) -> ServiceLogs:
        """The last `lines` (1..1000) journal lines of the service's unit, via `pct exec ... journalctl`.

        The unit name is validated (422 otherwise); the container must be running (409 `invalid_state`).
        """
        errors: list[FieldError] = []
        try:
            unit = validate_unit_name(service)
        except UnsafeValueError as exc:
            errors.append(FieldError(field="name", message=str(exc)))
            unit = service
        if not 1 <= lines <= MAX_LOG_LINES:
            errors.append(FieldError(field="lines", message=f"Must be between 1 and {MAX_LOG_LINES}."))
        if errors:
            raise ValidationFailed(errors)
        container = await self._owned(container_id, user_id)
        node = await self.session.get(Node, container.node_id)
        if node is None:
            raise NotFoundError("Container not found.")
        endpoint = NodeEndpoint.from_node(node, self.box)
        vmid = container.vmid
        await self._end_read()
        argv = ["journalctl", "-u", unit, "-n", str(lines), "--no-pager"]
        runner = pct_runner(endpoint, connect_timeout=self.inventory.timeout * 5)
        try:
            result = await runner.exec(vmid, argv, timeout=_LOG_TIMEOUT)
        except PctNotRunning:
            raise InvalidStateError("The container is not running; its journal cannot be read.") from None
        except ProxmoxNotFound:
            # Not created yet (or removed behind our back): nothing to read, like a stopped container.
            raise InvalidStateError("The container does not exist on its node; its journal cannot be read.") from None
        except (SshUnreachable, PctTimeout) as exc:
            raise NodeUnreachableError(f"The node's SSH service cannot be used: {exc}") from None
        except SshError as exc:
            raise NodeRequestError(f"Reading the journal over SSH failed: {exc}") from None
        finally:
            await runner.aclose()
        if result.exit_code != 0:
            raise NodeRequestError(f"journalctl exited with status {result.exit_code}.")
        return ServiceLogs(service=service, unit=unit, lines=result.stdout[-lines:])

    # ------------------------------------------------------------------ helpers

    async def _end_read(self) -> None:
        """End the read-only transaction before talking to nodes, so no connection idles in a transaction
        across network calls. Only reads happened so far; loaded objects stay usable (no expiry on commit)."""
        if self.session.new or self.session.dirty or self.session.deleted:
            raise RuntimeError("unflushed writes before a node call")
        await self.session.commit()

    async def _nodes(self, user_id: UUID, node_id: UUID | None) -> list[Node]:
        stmt = select(Node).where(Node.user_id == user_id).order_by(Node.id)
        if node_id is not None:
            stmt = stmt.where(Node.id == node_id)
        return list((await self.session.scalars(stmt)).all())

    @staticmethod
    def _base() -> Select[*tuple[Any, ...]]:
        return (
            select(*_ROW_COLUMNS)
            .join(Node, Node.id == Container.node_id)
            .outerjoin(Template, Template.id == Container.template_id)
        )

    def _select(self, user_id: UUID, filters: ContainerFilters) -> Select[*tuple[Any, ...]]:
        stmt = self._base().where(Container.user_id == user_id)
        if filters.node_id is not None:
            stmt = stmt.where(Container.node_id == filters.node_id)
        if filters.lifecycle is not None:
            stmt = stmt.where(Container.lifecycle == filters.lifecycle)
        if filters.template_id is not None:
            stmt = stmt.where(Container.template_id == filters.template_id)
        if filters.q:
            pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            matches: list[ColumnElement[bool]] = [
                func.lower(Container.hostname).like(pattern.lower(), escape="\\"),
                Container.ip_address.like(pattern, escape="\\"),
            ]
            if filters.q.isdigit() and len(filters.q) <= 9:
                matches.append(Container.vmid == int(filters.q))
            stmt = stmt.where(or_(*matches))
        return stmt.order_by(Container.created_at.desc(), Container.id.desc())

    async def _row(self, container_id: UUID, user_id: UUID) -> _Row:
        row = (
            await self.session.execute(self._base().where(Container.id == container_id, Container.user_id == user_id))
        ).first()
        if row is None:
            raise NotFoundError("Container not found.")
        return _Row(*row)

    async def _owned(self, container_id: UUID, user_id: UUID) -> Container:
        """The caller's container; another user's answers exactly like a missing one."""
        container = await self.session.get(Container, container_id)
        if container is None or container.user_id != user_id:
            raise NotFoundError("Container not found.")
        return container

    async def _active(self, ids: Sequence[UUID]) -> dict[UUID, Operation]:
        """The queued or running operation of each container that has one."""
        if not ids:
            return {}
        ops = await self.session.scalars(
            select(Operation).where(Operation.container_id.in_(ids), Operation.status.in_(ACTIVE_STATUSES))
        )
        return {op.container_id: op for op in ops if op.container_id is not None}


def _items(
    rows: Sequence[_Row], snapshots: dict[UUID, NodeSnapshot], active: dict[UUID, Operation]
) -> list[ContainerRead]:
    items: list[ContainerRead] = []
    for container in rows:
        snap = snapshots.get(container.node_id)
        status = _status(snapshots, container)
        guest = snap.guests.get(container.vmid) if snap is not None else None
        op = active.get(container.id)
        items.append(
            ContainerRead(
                id=container.id,
                node=NamedRef(id=container.node_id, name=container.node_name),
                vmid=container.vmid,
                hostname=container.hostname,
                template=(
                    NamedRef(id=container.template_id, name=container.template_name)
                    if container.template_id is not None and container.template_name is not None
                    else None
                ),
                lifecycle=container.lifecycle,  # type: ignore[arg-type]
                status=status,
                ip_address=container.ip_address,
                resources=(
                    ContainerUsage(
                        cpu_percent=round(guest.cpu * 100, 2),
                        memory_used=guest.mem,
                        memory_max=guest.maxmem,
                        disk_used=guest.disk,
                        disk_max=guest.maxdisk,
                        uptime_s=guest.uptime,
                    )
                    if guest is not None and status == "running"
                    else None
                ),
                allowed_actions=allowed_actions(container.lifecycle, status, op),
                active_operation=to_operation_read(op) if op is not None else None,
                created_at=container.created_at,
                updated_at=container.updated_at,
            )
        )
    return items


def allowed_actions(lifecycle: str, status: str, active: Operation | None) -> list[ContainerAction]:
    """What the API accepts now, by the same rules as the write side: one operation at a time (a delete may
    cancel a creation), lifecycle actions only when ready and by live status, retry after a failed creation."""
    if active is not None:
        return ["delete"] if active.kind == "create" else []
    if lifecycle == "creating":
        return ["delete"]
    if lifecycle == "error":
        return ["retry", "delete"]
    if lifecycle != "ready":
        return []
    if status == "running":
        return ["stop", "shutdown", "restart", "refresh_services", "delete"]
    if status == "stopped":
        return ["start", "delete"]
    return ["delete"]


def service_url(ip_address: str | None, port: int | None, protocol: str | None) -> str | None:
    """`http(s)://ip[:port]` for web ports, `tcp://ip:port` for other TCP ports, else None."""
    if not ip_address or port is None or protocol == "udp":
        return None
    address = ip_address.split("/", 1)[0]
    host = f"[{address}]" if ":" in address else address
    if port in HTTPS_PORTS:
        return f"https://{host}" if port == 443 else f"https://{host}:{port}"
    if port in HTTP_PORTS:
        return f"http://{host}" if port == 80 else f"http://{host}:{port}"
    return f"tcp://{host}:{port}"


def _status(snapshots: dict[UUID, NodeSnapshot], container: _Row) -> LiveStatus:
    snap = snapshots.get(container.node_id)
    status = snap.status_of(container.vmid) if snap is not None else "unknown"
    return status  # type: ignore[return-value]


def _unreachable(nodes: Sequence[Node], snapshots: dict[UUID, NodeSnapshot]) -> list[UnreachableNode]:
    return [
        UnreachableNode(id=node.id, name=node.name, error=snap.error)
        for node in nodes
        if (snap := snapshots[node.id]).error is not None
    ]


async def _config(inventory: LiveInventory, node: Node, vmid: int) -> LxcConfig | NodeReadError:
    try:
        return await inventory.config(node, vmid)
    except NodeReadError as exc:
        return exc


def _config_read(config: LxcConfig) -> ContainerConfig:
    rootfs = config.rootfs
    features = config.features
    return ContainerConfig(
        hostname=config.hostname,
        ostype=config.ostype,
        arch=config.get("arch"),
        cores=config.cores,
        memory_mb=config.memory,
        swap_mb=config.swap,
        unprivileged=config.unprivileged,
        onboot=config.onboot,
        rootfs=(
            RootfsRead(volume=rootfs.volume, storage=rootfs.storage, size=rootfs.size, size_bytes=rootfs.size_bytes)
            if rootfs is not None
            else None
        ),
        networks=[
            NetworkRead(
                key=key,
                name=net.name,
                bridge=net.bridge,
                ip=net.ip,
                gateway=net.gw,
                ip6=net.ip6,
                gateway6=net.gw6,
                hwaddr=net.hwaddr,
                tag=net.tag,
                firewall=net.firewall,
            )
            for key, net in config.networks.items()
        ],
        features=FeaturesRead(
            nesting=features.nesting,
            keyctl=features.keyctl,
            fuse=features.fuse,
            mknod=features.mknod,
            mount=list(features.mount),
        ),
        nameserver=config.nameserver,
        tags=config.tags,
        description=config.description,
        lock=config.lock,
    )


def _encode_cursor(created_at: datetime, container_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(container_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created, ident = raw
        return datetime.fromisoformat(created), UUID(ident)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise ValidationFailed([FieldError(field="cursor", message="Not a cursor from this list.")]) from None
