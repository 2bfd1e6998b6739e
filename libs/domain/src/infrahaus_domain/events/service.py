"""The audit trail: recording events (with their place in the progress stream and in the global stream) and
reading them back."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.errors import NotFoundError
from infrahaus_domain.events import positions
from infrahaus_domain.events.logbuffer import LogBuffer
from infrahaus_domain.events.schemas import EventPage, EventRead
from infrahaus_domain.models.containers import Container, Event, Operation
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.reads import to_read
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.webhooks import outbox


def to_event_read(event: Event) -> EventRead:
    # `metadata` is reserved on SQLAlchemy models: the column is called `meta`.
    state = event.state or {}
    return to_read(
        event,
        EventRead,
        metadata=dict(event.meta or {}),
        container=state.get("container"),
        operation=state.get("operation"),
    )


def _operation_state(op: Operation) -> dict[str, Any]:
    return {"id": str(op.id), "kind": op.kind, "status": op.status, "progress": op.progress, "step": op.step}


class EventRepository(SQLAlchemyAsyncRepository[Event]):
    model_type = Event


class EventService(DomainService[Event, EventRepository]):
    """Writes and reads `events`. Never commits: the caller's unit of work does."""

    repository_type = EventRepository

    def __init__(self, session: AsyncSession, *, logbuffer: LogBuffer) -> None:
        super().__init__(session)
        self.logbuffer = logbuffer

    async def record(
        self,
        container_id: UUID,
        type: str,
        message: str,
        metadata: dict[str, Any] | None = None,
        operation_id: UUID | None = None,
        *,
        removed: bool = False,
    ) -> Event:
        """Append an event to the container's trail and publish it to the container's progress channel.

        Its `seq` comes from the per-container sequence shared with log lines (never below an id already stored);
        its global stream position is given when the transaction commits (`infrahaus_domain.events.positions`).
        The event records what the container and the operation look like now (`removed`: the container is being
        deleted in this transaction), so call it after changing them. The row is flushed, not committed; the event
        is also put in the container's progress buffer and published at once, so progress listeners see it before
        the commit (commit promptly). `metadata` must be a JSON object and must never contain a secret.
        """
        container = await self.session.get(Container, container_id)
        if container is None:
            raise NotFoundError("Container not found.")
        operation = await self.session.get(Operation, operation_id) if operation_id is not None else None
        floor = await self.session.scalar(select(func.max(Event.seq)).where(Event.container_id == container_id))
        seq = await self.logbuffer.next_seq(container_id, int(floor or 0))
        state = {
            "container": {
                "lifecycle": "deleted" if removed else container.lifecycle,
                "status": None if removed else container.status,
            },
            "operation": _operation_state(operation) if operation is not None else None,
        }
        event = Event(
            container_id=container_id,
            user_id=container.user_id,
            node_id=container.node_id,
            seq=seq,
            operation_id=operation_id,
            type=type,
            message=message,
            meta=dict(metadata or {}),
            state=state,
        )
        self.session.add(event)
        await self.session.flush()
        positions.track(self.session, event.id, container.user_id, self.logbuffer.bus)
        read = to_event_read(event)
        data = msgspec.to_builtins(read)
        # The webhook deliveries it causes commit with it (the outbox, ADR 0016).
        await outbox.enqueue_for_event(
            self.session,
            user_id=container.user_id,
            event_type=type,
            metadata=event.meta,
            operation_id=operation_id,
            event_id=event.id,
            data=data,
            bus=self.logbuffer.bus,
        )
        await self.logbuffer.append_event(container_id, seq, data)
        return event

    async def page(
        self,
        container_id: UUID,
        *,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> EventPage:
        """Events of a container, newest first, with per-type counts; `cursor` continues a previous page."""
        stmt = select(Event).where(Event.container_id == container_id)
        if type is not None:
            stmt = stmt.where(Event.type == type)
        if cursor is not None:
            stmt = stmt.where(Event.id < decode_cursor(cursor, tuple[int])[0])
        rows = list((await self.session.scalars(stmt.order_by(Event.id.desc()).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        counts_rows = await self.session.execute(
            select(Event.type, func.count()).where(Event.container_id == container_id).group_by(Event.type)
        )
        return EventPage(
            items=[to_event_read(e) for e in rows],
            next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
            counts={t: int(n) for t, n in counts_rows.all()},
        )

    async def stream_page(
        self,
        user_id: UUID,
        *,
        after: int,
        container_id: UUID | None = None,
        node_id: UUID | None = None,
        types: Sequence[str] = (),
        limit: int = 500,
    ) -> list[tuple[int, EventRead]]:
        """The user's committed events after stream position `after`, in position order, with their positions."""
        stmt = select(Event).where(Event.user_id == user_id, Event.position > after)
        if container_id is not None:
            stmt = stmt.where(Event.container_id == container_id)
        if node_id is not None:
            stmt = stmt.where(Event.node_id == node_id)
        if types:
            stmt = stmt.where(Event.type.in_(types))
        rows = (await self.session.scalars(stmt.order_by(Event.position).limit(limit))).all()
        return [(int(e.position or 0), to_event_read(e)) for e in rows]

    async def last_position(self, user_id: UUID) -> int:
        """The position of the user's newest committed event (0 when none): where a stream "from now" starts."""
        found = await self.session.scalar(select(func.max(Event.position)).where(Event.user_id == user_id))
        return int(found or 0)

    async def since(self, container_id: UUID, after_seq: int, *, limit: int = 10_000) -> list[EventRead]:
        """Events of a container with `seq` above `after_seq`, in stream order (SSE replay)."""
        stmt = (
            select(Event)
            .where(Event.container_id == container_id, Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        )
        return [to_event_read(e) for e in (await self.session.scalars(stmt)).all()]
