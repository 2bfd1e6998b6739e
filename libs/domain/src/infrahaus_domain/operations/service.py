"""Operations: created by the API (committed before their job message is sent), driven by the worker.

State machine: queued -> running -> succeeded | failed | cancelled (queued may also go straight to cancelled).
Terminal operations never change again: every worker-facing method is a no-op (or returns None) on them, so a
redelivered message cannot resurrect a finished operation.
"""

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.containers.errors import ContainerBusyError, OperationCancelledError
from infrahaus_domain.errors import FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.events.logbuffer import BusMessage
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import TERMINAL_STATUSES, Container, Operation
from infrahaus_domain.operations.schemas import OperationError, OperationPage, OperationRead

# The audit event a successful operation leaves on its container.
_SUCCESS_EVENT = {
    "create": ("created", "Container created and provisioned."),
    "start": ("started", "Container started."),
    "stop": ("stopped", "Container stopped."),
    "shutdown": ("stopped", "Container shut down."),
    "restart": ("restarted", "Container restarted."),
}
# Kinds whose failure leaves the container itself in `error` (a failed start/stop leaves it as it was).
_FAILS_CONTAINER = {"create", "delete"}


def _now() -> datetime:
    return datetime.now(UTC)


def to_operation_read(op: Operation) -> OperationRead:
    return OperationRead(
        id=op.id,
        container_id=op.container_id,
        kind=op.kind,
        status=op.status,  # type: ignore[arg-type]
        progress=op.progress,
        step=op.step,
        message=op.message,
        error=None if op.error is None else msgspec.convert(op.error, OperationError),
        result=op.result,
        created_at=op.created_at,
        started_at=op.started_at,
        finished_at=op.finished_at,
    )


class OperationService:
    """Reads and transitions operations. Never commits: the caller's unit of work does (the worker should commit
    after each call so SSE listeners and the reconciler see progress)."""

    def __init__(self, session: AsyncSession, *, events: EventService) -> None:
        self.session = session
        self.events = events

    # ------------------------------------------------------------------ API side

    async def create(
        self, *, container_id: UUID, user_id: UUID, kind: str, params: dict[str, Any] | None = None
    ) -> Operation:
        """Insert a `queued` operation; `ContainerBusyError` when the container already has an active one.

        The database's partial unique index decides, so two concurrent requests cannot both win.
        """
        op = Operation(container_id=container_id, user_id=user_id, kind=kind, status="queued", params=params or {})
        try:
            async with self.session.begin_nested():
                self.session.add(op)
                await self.session.flush()
        except IntegrityError:
            raise ContainerBusyError("Another operation of this container is still queued or running.") from None
        return op

    async def get_for_user(self, operation_id: UUID, user_id: UUID) -> Operation:
        """The user's operation; another user's answers exactly like a missing one."""
        op = await self.session.get(Operation, operation_id)
        if op is None or op.user_id != user_id:
            raise NotFoundError("Operation not found.")
        return op

    async def get(self, operation_id: UUID) -> Operation | None:
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
            stmt = stmt.where(Operation.id < _decode_cursor(cursor))
        rows = list((await self.session.scalars(stmt.order_by(Operation.id.desc()).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return OperationPage(
            items=[to_operation_read(o) for o in rows],
            next_cursor=_encode_cursor(rows[-1].id) if more and rows else None,
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

    async def heartbeat(self, operation_id: UUID) -> None:
        """Record that the worker is still alive (call every few seconds during long steps)."""
        op = await self.session.get(Operation, operation_id)
        if op is not None and op.status == "running":
            op.heartbeat_at = _now()
            await self.session.flush()

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
        op.heartbeat_at = _now()
        await self.session.flush()
        if op.container_id is not None:
            await self.events.record(
                op.container_id, "step", message, {"step": step, "progress": op.progress, "kind": op.kind}, op.id
            )
        await self._publish(op)
        return op

    async def succeed(self, operation_id: UUID, result: dict[str, Any] | None = None) -> Operation | None:
        """Finish successfully: progress 100, `result` stored (never secrets), finished_at set.

        Side effects on the container (if it still exists): a `create` marks it `ready` and clears its last
        error; the kind's audit event is written (created/started/stopped/restarted). A `delete` should call
        `ContainerService.remove` first (the container row is gone, nothing else happens). No-op when terminal.
        """
        op = await self._locked(operation_id)
        if op is None or op.status in TERMINAL_STATUSES:
            return op
        op.status = "succeeded"
        op.progress = 100
        op.result = dict(result or {})
        op.finished_at = _now()
        await self.session.flush()
        container = await self._container(op)
        if container is not None:
            if op.kind == "create":
                container.lifecycle = "ready"
                container.last_error = None
            await self.session.flush()
            if op.kind in _SUCCESS_EVENT:
                event_type, message = _SUCCESS_EVENT[op.kind]
                await self.events.record(container.id, event_type, message, {"kind": op.kind}, op.id)
        await self._publish(op)
        return op

    async def fail(self, operation_id: UUID, error: OperationError) -> Operation | None:
        """Finish with a classified error; writes an `error` event and the container's `last_error`.

        A failed `create` or `delete` also sets the container's lifecycle to `error` (the Proxmox container is left
        for inspection; delete cleans up). No-op when the operation is already terminal.
        """
        op = await self._locked(operation_id)
        if op is None or op.status in TERMINAL_STATUSES:
            return op
        error_dict = msgspec.to_builtins(error)
        op.status = "failed"
        op.error = error_dict
        op.message = error.detail
        op.finished_at = _now()
        await self.session.flush()
        container = await self._container(op)
        if container is not None:
            container.last_error = {**error_dict, "operation_id": str(op.id), "kind": op.kind}
            if op.kind in _FAILS_CONTAINER:
                container.lifecycle = "error"
            await self.session.flush()
            await self.events.record(container.id, "error", error.detail, {"kind": op.kind, **error_dict}, op.id)
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
                    .where(Operation.status == "queued", Operation.updated_at < threshold)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        now = _now()
        for op in ops:
            op.updated_at = now
        await self.session.flush()
        return ops

    async def fail_stale(self, *, heartbeat_older_than: timedelta) -> list[Operation]:
        """Fail `running` operations whose worker stopped heart-beating, with code `worker_lost` (the container of
        a create or delete goes to `error`). Returns the operations it failed."""
        threshold = _now() - heartbeat_older_than
        ops = list(
            (
                await self.session.scalars(
                    select(Operation).where(
                        Operation.status == "running",
                        or_(
                            Operation.heartbeat_at < threshold,
                            and_(Operation.heartbeat_at.is_(None), Operation.updated_at < threshold),
                        ),
                    )
                )
            ).all()
        )
        failed: list[Operation] = []
        for op in ops:
            done = await self.fail(
                op.id,
                OperationError(
                    code="worker_lost",
                    detail="The worker running this operation stopped responding.",
                    remedy="Check the worker processes, then retry the operation (or delete the container).",
                ),
            )
            if done is not None:
                failed.append(done)
        return failed

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
        await self.events.logbuffer.publish(op.container_id, BusMessage(kind="operation", data=data))


def _encode_cursor(operation_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"o:{operation_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "o":
            raise ValueError(cursor)
        return UUID(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed([FieldError(field="cursor", message="Invalid cursor.")]) from None
