"""Operations: created by the API (committed before their job message is sent), driven by the worker.

State machine: queued -> running -> succeeded | failed | cancelled (queued may also go straight to cancelled).
Terminal operations never change again: every worker-facing method is a no-op (or returns None) on them, so a
redelivered message cannot resurrect a finished operation.
"""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.after_commit import after_commit
from infrahaus_domain.containers.errors import ContainerBusyError, OperationCancelledError
from infrahaus_domain.errors import NotFoundError
from infrahaus_domain.events.logbuffer import BusMessage
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import OPERATION_KINDS, TERMINAL_STATUSES, Container, Operation
from infrahaus_domain.operations.schemas import OperationError, OperationPage, OperationRead
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.reads import to_read
from infrahaus_domain.service_base import DomainService

# The audit event that ends a successful operation, and the operation's final message.
_SUCCESS_EVENT = {
    "create": ("created", "Container created and provisioned."),
    "start": ("started", "Container started."),
    "stop": ("stopped", "Container stopped."),
    "shutdown": ("stopped", "Container shut down."),
    "restart": ("restarted", "Container restarted."),
    "delete": ("deleted", "Container deleted."),
    "services_refresh": ("services_refreshed", "Services refreshed."),
    "sync": ("synced", "Container synced with its template."),
    "snapshot_create": ("snapshot_created", "Snapshot taken."),
    "snapshot_rollback": ("snapshot_rolled_back", "Container rolled back to a snapshot."),
    "snapshot_delete": ("snapshot_deleted", "Snapshot deleted."),
}
# The message of a just-queued operation (its `queued` event says the same).
_QUEUED_MESSAGE = {
    "create": "Creation requested.",
    "start": "Start requested.",
    "stop": "Stop requested.",
    "shutdown": "Shutdown requested.",
    "restart": "Restart requested.",
    "delete": "Deletion requested.",
    "services_refresh": "Services refresh requested.",
    "sync": "Sync requested.",
    "snapshot_create": "Snapshot requested.",
    "snapshot_rollback": "Rollback requested.",
    "snapshot_delete": "Snapshot deletion requested.",
}
# Guest statuses an operation's result may report (stored on the container for read-your-writes).
_GUEST_STATUSES = ("running", "stopped", "paused")
# Kinds whose failure leaves the container itself in `error` (a failed start/stop leaves it as it was).
_FAILS_CONTAINER = {"create", "delete"}


def _now() -> datetime:
    return datetime.now(UTC)


def _superseded(op: Operation, attempt: int | None) -> bool:
    """A later claim took the operation over from the worker that holds claim `attempt`."""
    return attempt is not None and op.attempts != attempt


def to_operation_read(op: Operation) -> OperationRead:
    return to_read(op, OperationRead)


class OperationRepository(SQLAlchemyAsyncRepository[Operation]):
    model_type = Operation


class OperationService(DomainService[Operation, OperationRepository]):
    """Reads and transitions operations. Never commits: the caller's unit of work does (the worker should commit
    after each call so SSE listeners and the reconciler see progress)."""

    repository_type = OperationRepository

    def __init__(self, session: AsyncSession, *, events: EventService) -> None:
        super().__init__(session)
        self.events = events

    # ------------------------------------------------------------------ API side

    async def queue(
        self, *, container_id: UUID, user_id: UUID, kind: str, params: dict[str, Any] | None = None
    ) -> Operation:
        """Insert a `queued` operation; `ContainerBusyError` when the container already has an active one.

        The database's partial unique index decides, so two concurrent requests cannot both win.
        """
        message = _QUEUED_MESSAGE.get(kind, "Requested.")
        op = Operation(
            container_id=container_id,
            user_id=user_id,
            kind=kind,
            status="queued",
            params=params or {},
            message=message,
        )
        try:
            async with self.session.begin_nested():
                self.session.add(op)
                await self.session.flush()
        except IntegrityError:
            raise ContainerBusyError("Another operation of this container is still queued or running.") from None
        await self.events.record(container_id, "queued", message, {"kind": kind}, op.id)
        return op

    async def get_for_user(self, operation_id: UUID, user_id: UUID) -> Operation:
        """The user's operation; another user's answers exactly like a missing one."""
        op = await self.session.get(Operation, operation_id)
        if op is None or op.user_id != user_id:
            raise NotFoundError("Operation not found.")
        return op

    async def find(self, operation_id: UUID) -> Operation | None:
        return await self.session.get(Operation, operation_id, populate_existing=True)

    async def active_for_container(self, container_id: UUID) -> Operation | None:
        return await self.session.scalar(
            select(Operation).where(Operation.container_id == container_id, Operation.status.in_(("queued", "running")))
        )

    async def latest_for_container(self, container_id: UUID) -> Operation | None:
        return await self.session.scalar(
            select(Operation)
            .where(Operation.container_id == container_id)
            .order_by(Operation.created_at.desc(), Operation.id.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )

    async def page(
        self,
        user_id: UUID,
        *,
        container_id: UUID | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> OperationPage:
        """The user's operations, newest first (ids are UUIDv7, so id order is creation order)."""
        stmt = select(Operation).where(Operation.user_id == user_id)
        if container_id is not None:
            stmt = stmt.where(Operation.container_id == container_id)
        if status is not None:
            stmt = stmt.where(Operation.status == status)
        if kind is not None:
            stmt = stmt.where(Operation.kind == kind)
        if cursor is not None:
            stmt = stmt.where(Operation.id < decode_cursor(cursor, tuple[UUID])[0])
        rows = list((await self.session.scalars(stmt.order_by(Operation.id.desc()).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return OperationPage(
            items=[to_operation_read(o) for o in rows],
            next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
        )

    async def cancel(self, operation_id: UUID, *, reason: str) -> Operation | None:
        """Mark a queued or running operation `cancelled` (the worker notices at its next `progress` call)."""
        op = await self._locked(operation_id)
        if op is None or op.status in TERMINAL_STATUSES:
            return op
        op.status = "cancelled"
        op.message = reason
        op.finished_at = _now()
        await self.session.flush()
        if op.container_id is not None:
            await self.events.record(op.container_id, "cancelled", reason, {"kind": op.kind}, op.id)
        await self._publish(op)
        return op

    # ------------------------------------------------------------------ worker side

    async def claim(self, operation_id: UUID, worker_id: str) -> Operation | None:
        """Take the operation for this worker: queued -> running (sets started_at, heartbeat_at, attempts += 1).

        A redelivered message of a `running` operation takes it over (attempts grows; resume from what the
        container row records, e.g. `pve_created_by_operation`). Returns None when the operation does not exist
        or is already terminal (succeeded, failed, cancelled): the worker then does nothing.
        """
        op = await self._locked(operation_id)
        if op is None or op.status in TERMINAL_STATUSES:
            return None
        now = _now()
        op.status = "running"
        op.worker_id = worker_id
        op.started_at = op.started_at or now
        op.heartbeat_at = now
        op.attempts += 1
        await self.session.flush()
        await self._publish(op)
        return op

    async def heartbeat(self, operation_id: UUID, attempt: int | None = None) -> bool:
        """Record that the worker is still alive (call every few seconds during long steps).

        With `attempt` (the `attempts` value its claim produced), False when a later claim took the operation over
        (it was resumed elsewhere after this worker was thought lost): the worker must stop without writing anything
        more. A finished or cancelled operation is left alone (True: the worker notices at its next step).
        """
        op = await self.session.get(Operation, operation_id, populate_existing=True)
        if op is None:
            return True
        if _superseded(op, attempt) or (attempt is not None and op.status == "running" and op.worker_id is None):
            # Taken over, or handed over to another worker (`resume_stale`) and not yet claimed again.
            return False
        if op.status == "running":
            op.heartbeat_at = _now()
            await self.session.flush()
        return True

    async def is_cancelled(self, operation_id: UUID) -> bool:
        """True when the operation was cancelled (or removed): the worker should stop at the next step boundary."""
        op = await self.session.get(Operation, operation_id, populate_existing=True)
        return op is None or op.status == "cancelled"

    async def progress(self, operation_id: UUID, *, step: str, progress: int, message: str) -> Operation:
        """Move a running operation to `step` at `progress` (0-100) and write a `step` event with the message.

        Also refreshes the heartbeat. Raises `OperationCancelledError` when the operation was cancelled meanwhile
        (a delete of a container being created), so the pipeline stops between steps.
        """
        op = await self.session.get(Operation, operation_id, populate_existing=True)
        if op is None or op.status == "cancelled":
            raise OperationCancelledError("The operation was cancelled.")
        if op.status in TERMINAL_STATUSES:
            return op
        op.step = step
        op.progress = max(0, min(100, progress))
        op.message = message
        if op.worker_id is not None:
            # Not for an operation handed over to another worker: its next claim must find it free.
            op.heartbeat_at = _now()
        await self.session.flush()
        if op.container_id is not None:
            await self.events.record(
                op.container_id, "step", message, {"step": step, "progress": op.progress, "kind": op.kind}, op.id
            )
        await self._publish(op)
        return op

    async def succeed(
        self, operation_id: UUID, result: dict[str, Any] | None = None, *, attempt: int | None = None
    ) -> Operation | None:
        """Finish successfully: progress 100, `result` stored (never secrets), finished_at set.

        Side effects on the container (if it still exists): a `create` marks it `ready` and clears its last
        error; a `status` in the result (`running`, `stopped`) becomes the container's stored status; the kind's
        audit event is written (created/started/stopped/restarted/deleted/services_refreshed) and its sentence
        becomes the operation's final `message`. A `delete` calls `ContainerService.remove` afterwards, in the same
        transaction (the `deleted` event outlives the container row). No-op when terminal, or when `attempt` is
        given and a later claim took the operation over.
        """
        op = await self._locked(operation_id)
        if op is None or op.status in TERMINAL_STATUSES or _superseded(op, attempt):
            return op
        event_type, message = _SUCCESS_EVENT.get(op.kind, ("", "Done."))
        if op.kind == "delete" and (result or {}).get("destroyed") is False:
            # Only the record went: the guest was not ours, or no longer there.
            gone = (result or {}).get("reason") == "gone"
            message = "Container record removed; " + (
                "its guest was already gone from the node." if gone else "its guest on the node was left untouched."
            )
        op.status = "succeeded"
        op.progress = 100
        op.result = dict(result or {})
        op.message = message
        op.finished_at = _now()
        await self.session.flush()
        container = await self._container(op)
        if container is not None:
            if op.kind == "create":
                container.lifecycle = "ready"
                container.last_error = None
            status = op.result.get("status")
            if status in _GUEST_STATUSES:
                # What reads show until a node answer fetched after this moment says otherwise.
                container.status = status
                container.status_at = op.finished_at
            await self.session.flush()
            if event_type:
                await self.events.record(
                    container.id, event_type, message, {"kind": op.kind}, op.id, removed=op.kind == "delete"
                )
        await self._publish(op)
        return op

    async def fail(
        self,
        operation_id: UUID,
        error: OperationError,
        *,
        attempt: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> Operation | None:
        """Finish with a classified error; writes a `failed` event and the container's `last_error`. `result` says
        what was done about the failure (e.g. `{"rolled_back": true}`) and replaces the resume markers.

        A failed `create` or `delete` also sets the container's lifecycle to `error` (the Proxmox container is left
        for inspection; delete cleans up). No-op when the operation is already terminal, or when `attempt` is given
        and a later claim took the operation over.
        """
        op = await self._locked(operation_id)
        if op is None or op.status in TERMINAL_STATUSES or _superseded(op, attempt):
            return op
        error_dict = msgspec.to_builtins(error)
        op.status = "failed"
        op.error = error_dict
        op.message = error.detail
        if result is not None:
            op.result = dict(result)
        op.finished_at = _now()
        await self.session.flush()
        container = await self._container(op)
        if container is not None:
            container.last_error = {**error_dict, "operation_id": str(op.id), "kind": op.kind}
            if op.kind in _FAILS_CONTAINER:
                container.lifecycle = "error"
            await self.session.flush()
            await self.events.record(container.id, "failed", error.detail, {"kind": op.kind, **error_dict}, op.id)
        await self._publish(op)
        return op

    async def requeue_lost(self, *, queued_longer_than: timedelta) -> list[Operation]:
        """Queued operations older than the threshold whose message was probably lost; the reconciler re-sends
        each one's job (`infrahaus_domain.jobs.job_for_operation`). Their `updated_at` is bumped so the next pass
        waits the threshold again before re-sending."""
        threshold = _now() - queued_longer_than
        ops = list(
            (
                await self.session.scalars(
                    select(Operation)
                    # A held operation waits for its batch (`BatchService.release`), not for a lost message.
                    .where(Operation.status == "queued", Operation.held.is_(False), Operation.updated_at < threshold)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        now = _now()
        for op in ops:
            op.updated_at = now
        await self.session.flush()
        return ops

    async def resume_stale(
        self, *, heartbeat_older_than: timedelta, max_attempts: int
    ) -> tuple[list[Operation], list[Operation]]:
        """`running` operations whose worker stopped heart-beating (killed, out of memory, machine gone): each is
        handed to another worker to resume from its resume markers, as a drained worker's message would be — its
        heartbeat is cleared so the next claim takes it over at once, and the caller re-sends its job. An operation
        that already used `max_attempts` claims fails with code `worker_lost` instead (a create or delete leaves its
        container in `error`). Returns (resumed, failed).

        An operation handed over but not claimed again within the threshold (its message lost once more) is handed
        over again; only claims count as attempts.
        """
        threshold = _now() - heartbeat_older_than
        ops = list(
            (
                await self.session.scalars(
                    select(Operation)
                    .where(
                        Operation.status == "running",
                        or_(
                            Operation.heartbeat_at < threshold,
                            and_(Operation.heartbeat_at.is_(None), Operation.updated_at < threshold),
                        ),
                    )
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        resumed: list[Operation] = []
        failed: list[Operation] = []
        for op in ops:
            if op.attempts >= max_attempts or op.kind not in OPERATION_KINDS:
                done = await self.fail(
                    op.id,
                    OperationError(
                        code="worker_lost",
                        detail=f"The workers running this operation stopped responding ({op.attempts} attempt(s)).",
                        remedy="Check the worker processes, then retry the operation (or delete the container).",
                    ),
                )
                if done is not None:
                    failed.append(done)
                continue
            op.heartbeat_at = None
            op.worker_id = None
            op.updated_at = _now()
            op.message = "Resuming: the worker running this operation stopped responding."
            resumed.append(op)
        await self.session.flush()
        for op in resumed:
            await self._publish(op)
        return resumed, failed

    # ------------------------------------------------------------------ internals

    async def _locked(self, operation_id: UUID) -> Operation | None:
        return await self.session.scalar(
            select(Operation)
            .where(Operation.id == operation_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def _container(self, op: Operation) -> Container | None:
        if op.container_id is None:
            return None
        return await self.session.get(Container, op.container_id)

    async def _publish(self, op: Operation) -> None:
        if op.container_id is None:
            return
        data: dict[str, object] = {
            "id": str(op.id),
            "kind": op.kind,
            "status": op.status,
            "progress": op.progress,
            "step": op.step,
        }
        message = BusMessage(kind="operation", data=data)
        if op.status in TERMINAL_STATUSES:
            # Streams end on this message and their clients read the operation next: only once it is committed.
            logbuffer, container_id = self.events.logbuffer, op.container_id
            after_commit(self.session, lambda: logbuffer.publish(container_id, message))
            return
        await self.events.logbuffer.publish(op.container_id, message)
