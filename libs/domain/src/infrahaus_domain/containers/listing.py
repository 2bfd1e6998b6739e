"""Containers, listing: the live list, summary and detail.

Database rows are merged with each node's live state (`LiveInventory`). A node that cannot be read never fails a
read: its containers show `status: unknown` and the node is listed in `unreachable_nodes`.

The list is ordered newest first by `(created_at, id)`, a total order, and a cursor is the position of the last
item returned, so pages never repeat or skip a container that existed when the first page was read (containers
created meanwhile sort before the cursor and show up on a fresh first page). The `status` filter applies to the
live status after the merge: a page holds up to `limit` matching containers and the next page continues after the
last one returned.

Read your writes: an operation that succeeded stored the status it left the guest in (`Container.status`, at
`status_at`). A node answer fetched before that moment (a cached one, or one in flight while the operation
finished) cannot know it, so such an answer yields to the stored status; an answer fetched afterwards is the live
truth again. `CLOCK_SKEW` covers clocks of different hosts (API and worker) that are a little apart.
"""

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
from sqlalchemy import ColumnElement, Select, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

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
    FeaturesRead,
    LiveStatus,
    NetworkRead,
    NodeCount,
    RevisionState,
    RootfsRead,
    UnreachableNode,
)
from infrahaus_domain.containers.schemas import ContainerSpec, NamedRef
from infrahaus_domain.containers.service import ContainerRepository, ContainerService
from infrahaus_domain.errors import NotFoundError
from infrahaus_domain.models.containers import (
    ACTIVE_STATUSES,
    LIFECYCLES,
    Container,
    Operation,
)
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.models.templates import Template, TemplateRevision
from infrahaus_domain.operations.service import to_operation_read
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.service_base import DomainService
from infrahaus_proxmox.models import LxcConfig

_SCAN_BATCH = 200
_LOG_TIMEOUT = 20.0
_STATUSES: tuple[LiveStatus, ...] = ("running", "stopped", "paused", "unknown")
# Seconds by which the clocks of the processes that stamp `fetched_at` and `status_at` may differ.
CLOCK_SKEW = 1.0


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
    status: str | None
    status_at: datetime | None


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
    Container.status,
    Container.status_at,
)


class ContainerFilters(msgspec.Struct, kw_only=True, frozen=True):
    """Filters of the list; `q` matches the hostname (substring, any case), the VMID or the IP address."""

    node_id: UUID | None = None
    lifecycle: str | None = None
    status: LiveStatus | None = None
    template_id: UUID | None = None
    q: str | None = None


class ContainerListing(DomainService[Container, ContainerRepository]):
    """The caller's containers merged with live state. The session must not expire objects on commit: reads end
    their transaction before calling nodes."""

    repository_type = ContainerRepository

    def __init__(self, session: AsyncSession, *, inventory: LiveInventory, containers: ContainerService) -> None:
        super().__init__(session)
        self.inventory = inventory
        self.containers = containers

    # ------------------------------------------------------------------ list, summary

    async def page(
        self, user_id: UUID, filters: ContainerFilters, *, limit: int = 50, cursor: str | None = None
    ) -> ContainerPage:
        """One page of the caller's containers merged with live state (see the module docstring for ordering)."""
        position = decode_cursor(cursor, tuple[datetime, UUID]) if cursor is not None else None
        nodes = await self._nodes(user_id, filters.node_id)
        stmt = self._select(user_id, filters)
        # The nodes are asked while the database is read; the read transaction ends before waiting for them.
        fetch = asyncio.create_task(self.inventory.snapshots(nodes))
        try:
            if filters.status is None:
                picked = await self._rows(stmt, position, limit + 1)
                active = await self._active([row.id for row in picked[:limit]])
                await self.end_read()
                snapshots = await fetch
            else:
                await self.end_read()
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
            next_cursor=encode_cursor(last.created_at, last.id) if more and last is not None else None,
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
        await self.end_read()
        snapshots = await self.inventory.snapshots(nodes)
        rows = await self.session.execute(
            select(Container.node_id, Container.vmid, Container.lifecycle, Container.status, Container.status_at).where(
                Container.user_id == user_id
            )
        )
        by_lifecycle: Counter[str] = Counter({lc: 0 for lc in LIFECYCLES})
        by_status: Counter[str] = Counter({st: 0 for st in _STATUSES})
        per_node: dict[UUID, Counter[str]] = {node.id: Counter() for node in nodes}
        for node_id, vmid, lifecycle, stored, stored_at in rows:
            status = live_status(snapshots.get(node_id), vmid, stored, stored_at)
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
        container = await self.containers.get_for_user(container_id, user_id)
        node = await self.session.get(Node, container.node_id)
        if node is None:
            raise NotFoundError("Container not found.")
        active = await self._active([container.id])
        revisions = await revision_state(self.session, container)
        await self.end_read()
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
            revisions=revisions,
        )

    # ------------------------------------------------------------------ helpers

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
                    if guest is not None and status == "running" and guest.status == "running"
                    else None
                ),
                allowed_actions=allowed_actions(
                    container.lifecycle, status, op, has_template=container.template_name is not None
                ),
                active_operation=to_operation_read(op) if op is not None else None,
                created_at=container.created_at,
                updated_at=container.updated_at,
            )
        )
    return items


def allowed_actions(
    lifecycle: str, status: str, active: Operation | None, *, has_template: bool = False
) -> list[ContainerAction]:
    """What the API accepts now, by the same rules as the write side: one operation at a time (a delete may
    cancel a creation), lifecycle actions only when ready and by live status, retry after a failed creation; a
    snapshot when ready, a sync when running and made from a template that still exists."""
    if active is not None:
        return ["delete"] if active.kind == "create" else []
    if lifecycle == "creating":
        return ["delete"]
    if lifecycle == "error":
        return ["retry", "delete"]
    if lifecycle != "ready":
        return []
    if status == "running":
        running: list[ContainerAction] = ["stop", "shutdown", "restart", "refresh_services"]
        return [*running, "sync", "snapshot", "delete"] if has_template else [*running, "snapshot", "delete"]
    if status == "stopped":
        return ["start", "snapshot", "delete"]
    return ["delete"]


def live_status(snap: NodeSnapshot | None, vmid: int, stored: str | None, stored_at: datetime | None) -> LiveStatus:
    """The status a read shows: the node's answer, unless the last operation's stored status is newer than it."""
    if snap is None or not snap.reachable:
        return "unknown"
    if stored in _STATUSES and stored_at is not None and snap.fetched_at < stored_at.timestamp() + CLOCK_SKEW:
        return stored
    return snap.status_of(vmid)  # type: ignore[return-value]


def _status(snapshots: dict[UUID, NodeSnapshot], container: _Row) -> LiveStatus:
    return live_status(snapshots.get(container.node_id), container.vmid, container.status, container.status_at)


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


async def revision_state(session: AsyncSession, container: Container) -> RevisionState:
    """The container's revision numbers (created from, synced to, the template's newest)."""

    async def number(revision_id: UUID | None) -> int | None:
        if revision_id is None:
            return None
        revision = await session.get(TemplateRevision, revision_id)
        return revision.number if revision is not None else None

    template = await session.get(Template, container.template_id) if container.template_id else None
    return RevisionState(
        created_from=await number(container.template_revision_id),
        synced_to=await number(container.synced_revision_id),
        latest=(template.revision or None) if template is not None else None,
        sync_on_start=container.sync_on_start,
    )
