"""Bulk actions: one action on many containers as a batch of ordinary operations.

Each container's part goes through the one request path of its action (`ContainerService.request_action` /
`request_delete`, `DayTwoService.request_sync`), so every rule of a single action holds: one operation at a time per
container, the state rules, only the caller's containers. A container those rules refuse is recorded in the batch as
skipped with the problem code it would have answered (`container_busy`, `invalid_state`, `not_found`, ...).

`max_parallel` is kept in the database, not in a process: operations beyond it are inserted `queued` with `held`
set and no job message is sent for them. Whenever an operation of the batch ends, the worker calls `release`, which
takes the batch's row lock, counts the batch's operations that are queued-and-released or running, and releases as
many held ones as there are free slots (their jobs are sent after the commit). Several workers finishing at once
serialise on that lock, so no more than `max_parallel` are ever released and unfinished together; the reconciler
calls `release` too, for a worker that died between finishing and releasing.
"""

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.batches.schemas import (
    MAX_BATCH,
    BatchCounts,
    BatchItem,
    BatchPage,
    BatchRead,
    BatchStatus,
    BatchSummary,
    BulkAction,
    BulkRequest,
    BulkSelector,
)
from infrahaus_domain.containers.inventory import LiveInventory
from infrahaus_domain.containers.listing import live_status
from infrahaus_domain.containers.service import DEFAULT_SHUTDOWN_TIMEOUT, ContainerService
from infrahaus_domain.day_two.service import DayTwoService
from infrahaus_domain.errors import DomainError, FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.models.batches import Batch
from infrahaus_domain.models.containers import ACTIVE_STATUSES, Container, Operation
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.operations.service import OperationService, to_operation_read
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.service_base import DomainService

CANCEL_REASON = "Cancelled with its batch."


def _now() -> datetime:
    return datetime.now(UTC)


class BatchRepository(SQLAlchemyAsyncRepository[Batch]):
    model_type = Batch


class BatchService(DomainService[Batch, BatchRepository]):
    """Bulk actions and their batches. Never commits: the caller commits, then sends the released operations' jobs."""

    repository_type = BatchRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        containers: ContainerService,
        operations: OperationService,
        day_two: Callable[[], DayTwoService],
        inventory: LiveInventory | None = None,
    ) -> None:
        super().__init__(session)
        self.containers = containers
        self.operations = operations
        self._day_two = day_two
        self.inventory = inventory

    # ------------------------------------------------------------------ API side

    async def request(self, user_id: UUID, data: BulkRequest) -> tuple[BatchRead, list[Operation]]:
        """Queue `data.action` on every selected container; returns the batch and the operations to send now (the
        first `max_parallel`; the others wait, held, for `release`)."""
        _check(data)
        targets = await self._targets(user_id, data)
        selection: dict[str, Any] = (
            {"container_ids": [str(i) for i in data.container_ids]}
            if data.container_ids is not None
            else {"selector": _builtins(data.selector)}
        )
        batch = Batch(
            user_id=user_id,
            action=data.action,
            max_parallel=data.max_parallel,
            selection=selection,
            targets=[{"container_id": str(cid), "hostname": hostname} for cid, hostname in targets],
            skipped=[],
        )
        self.session.add(batch)
        await self.session.flush()
        skipped: list[dict[str, Any]] = []
        released: list[Operation] = []
        for container_id, hostname in targets:
            try:
                # A refused container leaves nothing behind (a delete's lifecycle change included).
                async with self.session.begin_nested():
                    op = await self._request_one(data.action, container_id, user_id)
            except DomainError as exc:
                skipped.append(
                    {"container_id": str(container_id), "hostname": hostname, "code": exc.code, "detail": exc.detail}
                )
                continue
            op.batch_id = batch.id
            op.held = data.max_parallel is not None and len(released) >= data.max_parallel
            if not op.held:
                released.append(op)
        batch.skipped = skipped
        await self.session.flush()
        return await self._read(batch), released

    async def get_for_user(self, batch_id: UUID, user_id: UUID) -> BatchRead:
        """The user's batch with every container's operation (or why it was skipped)."""
        return await self._read(await self._for_user(batch_id, user_id))

    async def page(self, user_id: UUID, *, limit: int = 50, cursor: str | None = None) -> BatchPage:
        """The user's batches, newest first (UUIDv7 ids: id order is creation order), with their counts."""
        stmt = select(Batch).where(Batch.user_id == user_id)
        if cursor is not None:
            stmt = stmt.where(Batch.id < decode_cursor(cursor, tuple[UUID])[0])
        rows = list((await self.session.scalars(stmt.order_by(Batch.id.desc()).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        statuses: dict[UUID, Counter[str]] = {b.id: Counter() for b in rows}
        if rows:
            counted = await self.session.execute(
                select(Operation.batch_id, Operation.status, func.count())
                .where(Operation.batch_id.in_([b.id for b in rows]))
                .group_by(Operation.batch_id, Operation.status)
            )
            for batch_id, status, count in counted:
                if batch_id is not None:
                    statuses[batch_id][status] = count
        return BatchPage(
            items=[_summary(b, statuses[b.id]) for b in rows],
            next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
        )

    async def cancel(self, batch_id: UUID, user_id: UUID) -> BatchRead:
        """Cancel every operation of the batch that has not started (queued, held or not); running ones finish."""
        batch = await self._locked(batch_id)
        if batch is None or batch.user_id != user_id:
            raise NotFoundError("Batch not found.")
        waiting = list(
            (
                await self.session.scalars(
                    select(Operation.id).where(Operation.batch_id == batch.id, Operation.status == "queued")
                )
            ).all()
        )
        running = await self.session.scalar(
            select(func.count(Operation.id)).where(Operation.batch_id == batch.id, Operation.status == "running")
        )
        if (waiting or running) and batch.cancelled_at is None:
            batch.cancelled_at = _now()
        for op_id in waiting:
            op = await self.operations.cancel(op_id, reason=CANCEL_REASON)
            if op is not None:
                op.held = False
        await self.session.flush()
        return await self._read(batch)

    # ------------------------------------------------------------------ worker side

    async def release(self, batch_id: UUID) -> list[Operation]:
        """Release as many held operations of the batch as `max_parallel` has free slots (none once cancelled);
        the caller commits, then sends their jobs."""
        batch = await self._locked(batch_id)
        if batch is None or batch.cancelled_at is not None:
            return []
        held = (
            select(Operation)
            .where(Operation.batch_id == batch.id, Operation.held.is_(True), Operation.status == "queued")
            .order_by(Operation.created_at, Operation.id)
            .with_for_update()
        )
        if batch.max_parallel is not None:
            busy = await self.session.scalar(
                select(func.count(Operation.id)).where(
                    Operation.batch_id == batch.id,
                    Operation.held.is_(False),
                    Operation.status.in_(ACTIVE_STATUSES),
                )
            )
            free = batch.max_parallel - (busy or 0)
            if free <= 0:
                return []
            held = held.limit(free)
        ops = list((await self.session.scalars(held.execution_options(populate_existing=True))).all())
        now = _now()
        for op in ops:
            op.held = False
            # The reconciler re-sends a released operation's job only after `requeue_after` from now.
            op.updated_at = now
        await self.session.flush()
        return ops

    async def batch_of(self, operation_id: UUID) -> UUID | None:
        """The batch of a finished operation (None for one outside a batch or not finished)."""
        return await self.session.scalar(
            select(Operation.batch_id).where(Operation.id == operation_id, Operation.status.not_in(ACTIVE_STATUSES))
        )

    async def with_held(self) -> list[UUID]:
        """Batches that still hold operations back (the reconciler releases what a lost worker did not)."""
        rows = await self.session.scalars(
            select(Operation.batch_id)
            .where(Operation.held.is_(True), Operation.status == "queued", Operation.batch_id.is_not(None))
            .distinct()
        )
        return [batch_id for batch_id in rows.all() if batch_id is not None]

    # ------------------------------------------------------------------ internals

    async def _request_one(self, action: BulkAction, container_id: UUID, user_id: UUID) -> Operation:
        """The single action's own request path."""
        if action == "delete":
            return await self.containers.request_delete(container_id, user_id)
        if action == "sync":
            return await self._day_two().request_sync(container_id, user_id, reason="bulk")
        params = {"timeout": DEFAULT_SHUTDOWN_TIMEOUT} if action == "shutdown" else None
        return await self.containers.request_action(container_id, user_id, action, params=params)

    async def _targets(self, user_id: UUID, data: BulkRequest) -> list[tuple[UUID, str | None]]:
        """The selected containers in order, with their hostnames. Named ids that are not the caller's stay in the
        list: their request answers `not_found` like any missing container's."""
        if data.container_ids is not None:
            rows = await self.session.execute(
                select(Container.id, Container.hostname).where(
                    Container.id.in_(data.container_ids), Container.user_id == user_id
                )
            )
            hostnames: dict[UUID, str] = {cid: hostname for cid, hostname in rows}
            return [(cid, hostnames.get(cid)) for cid in data.container_ids]
        assert data.selector is not None
        return await self._selected(user_id, data.selector)

    async def _selected(self, user_id: UUID, selector: BulkSelector) -> list[tuple[UUID, str | None]]:
        stmt = select(Container).where(Container.user_id == user_id)
        if selector.node_id is not None:
            stmt = stmt.where(Container.node_id == selector.node_id)
        if selector.template_id is not None:
            stmt = stmt.where(Container.template_id == selector.template_id)
        if selector.lifecycle is not None:
            stmt = stmt.where(Container.lifecycle == selector.lifecycle)
        rows: Sequence[Container] = (
            await self.session.scalars(stmt.order_by(Container.created_at, Container.id))
        ).all()
        if selector.tags:
            wanted = set(selector.tags)
            rows = [c for c in rows if wanted <= set((c.request or {}).get("tags") or [])]
        if selector.status is not None:
            rows = await self._with_status(rows, selector.status)
        if len(rows) > MAX_BATCH:
            raise ValidationFailed(
                [FieldError(field="selector", message=f"Matches {len(rows)} containers; at most {MAX_BATCH} at once.")]
            )
        return [(c.id, c.hostname) for c in rows]

    async def _with_status(self, rows: Sequence[Container], status: str) -> list[Container]:
        """The containers whose live status (as the container list shows it) is `status`."""
        if self.inventory is None:
            raise RuntimeError("selecting by live status needs the live inventory (the API process)")
        node_ids = {c.node_id for c in rows}
        nodes = list((await self.session.scalars(select(Node).where(Node.id.in_(node_ids)))).all()) if rows else []
        snapshots = await self.inventory.snapshots(nodes)
        return [c for c in rows if live_status(snapshots.get(c.node_id), c.vmid, c.status, c.status_at) == status]

    async def _for_user(self, batch_id: UUID, user_id: UUID) -> Batch:
        batch = await self.session.get(Batch, batch_id)
        if batch is None or batch.user_id != user_id:
            raise NotFoundError("Batch not found.")
        return batch

    async def _locked(self, batch_id: UUID) -> Batch | None:
        return await self.session.scalar(
            select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
        )

    async def _read(self, batch: Batch) -> BatchRead:
        ops = (
            await self.session.scalars(
                select(Operation)
                .where(Operation.batch_id == batch.id)
                .order_by(Operation.created_at, Operation.id)
                .execution_options(populate_existing=True)
            )
        ).all()
        by_container = {op.container_id: op for op in ops}
        skipped = {UUID(s["container_id"]): s for s in batch.skipped}
        items: list[BatchItem] = []
        for target in batch.targets:
            container_id = UUID(target["container_id"])
            op = by_container.get(container_id)
            if op is not None:
                items.append(
                    BatchItem(
                        container_id=container_id,
                        hostname=target.get("hostname"),
                        status=op.status,  # type: ignore[arg-type]
                        waiting=op.held and op.status == "queued",
                        skipped=None,
                        detail=None,
                        operation=to_operation_read(op),
                    )
                )
            elif (skip := skipped.get(container_id)) is not None:
                items.append(
                    BatchItem(
                        container_id=container_id,
                        hostname=skip.get("hostname"),
                        status="skipped",
                        waiting=False,
                        skipped=skip["code"],
                        detail=skip["detail"],
                        operation=None,
                    )
                )
        statuses = Counter(op.status for op in ops)
        summary = _summary(batch, statuses)
        return BatchRead(**{f: getattr(summary, f) for f in summary.__struct_fields__}, operations=items)


def _summary(batch: Batch, statuses: Counter[str]) -> BatchSummary:
    counts = BatchCounts(
        queued=statuses["queued"],
        running=statuses["running"],
        succeeded=statuses["succeeded"],
        failed=statuses["failed"],
        cancelled=statuses["cancelled"],
        skipped=len(batch.skipped),
    )
    status: BatchStatus = (
        "active" if counts.queued or counts.running else ("cancelled" if batch.cancelled_at else "finished")
    )
    return BatchSummary(
        id=batch.id,
        action=batch.action,  # type: ignore[arg-type]
        status=status,
        max_parallel=batch.max_parallel,
        total=len(batch.targets),
        counts=counts,
        created_at=batch.created_at,
        cancelled_at=batch.cancelled_at,
    )


def _check(data: BulkRequest) -> None:
    """What the body's types cannot say, every problem at once: exactly one of `container_ids` and `selector`, no
    container named twice, a selector with a criterion."""
    errors: list[FieldError] = []
    if data.container_ids is None and data.selector is None:
        errors.append(
            FieldError(field="container_ids", message="Name the containers, or give a selector.", code="required")
        )
    if data.container_ids is not None and data.selector is not None:
        errors.append(FieldError(field="selector", message="Give container_ids or a selector, not both."))
    if data.container_ids is not None:
        seen: set[UUID] = set()
        for index, container_id in enumerate(data.container_ids):
            if container_id in seen:
                errors.append(FieldError(field=f"container_ids[{index}]", message="Listed twice."))
            seen.add(container_id)
    if data.selector is not None and not any(
        value not in (None, []) for value in (getattr(data.selector, f) for f in data.selector.__struct_fields__)
    ):
        errors.append(FieldError(field="selector", message="Give at least one criterion."))
    if errors:
        raise ValidationFailed(errors)


def _builtins(selector: BulkSelector | None) -> dict[str, Any]:
    return msgspec.to_builtins(selector, order="deterministic") if selector is not None else {}
