"""The audit trail: recording events (with their place in the progress stream) and reading them back."""

import base64
import binascii
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.errors import FieldError, ValidationFailed
from infrahaus_domain.events.logbuffer import LogBuffer
from infrahaus_domain.events.schemas import EventPage, EventRead
from infrahaus_domain.models.containers import Event


def to_event_read(event: Event) -> EventRead:
    return EventRead(
        id=event.id,
        seq=event.seq,
        container_id=event.container_id,
        operation_id=event.operation_id,
        type=event.type,
        message=event.message,
        metadata=dict(event.meta or {}),
        created_at=event.created_at,
    )


class EventService:
    """Writes and reads `events`. Never commits: the caller's unit of work does."""

    def __init__(self, session: AsyncSession, *, logbuffer: LogBuffer) -> None:
        self.session = session
        self.logbuffer = logbuffer

    async def record(
        self,
        container_id: UUID,
        type: str,
        message: str,
        metadata: dict[str, Any] | None = None,
        operation_id: UUID | None = None,
    ) -> Event:
        """Append an event to the container's trail and publish it to the container's progress channel.

        Its `seq` comes from the per-container sequence shared with log lines (never below an id already stored).
        The row is flushed, not committed; the event is also put in the container's progress buffer and published at
        once, so SSE listeners see it before the commit (commit promptly). `metadata` must be a
        JSON object and must never contain a secret.
        """
        floor = await self.session.scalar(select(func.max(Event.seq)).where(Event.container_id == container_id))
        seq = await self.logbuffer.next_seq(container_id, int(floor or 0))
        event = Event(
            container_id=container_id,
            seq=seq,
            operation_id=operation_id,
            type=type,
            message=message,
            meta=dict(metadata or {}),
        )
        self.session.add(event)
        await self.session.flush()
        read = to_event_read(event)
        await self.logbuffer.append_event(container_id, seq, msgspec.to_builtins(read))
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
            stmt = stmt.where(Event.id < _decode_cursor(cursor))
        rows = list((await self.session.scalars(stmt.order_by(Event.id.desc()).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        counts_rows = await self.session.execute(
            select(Event.type, func.count()).where(Event.container_id == container_id).group_by(Event.type)
        )
        return EventPage(
            items=[to_event_read(e) for e in rows],
            next_cursor=_encode_cursor(rows[-1].id) if more and rows else None,
            counts={t: int(n) for t, n in counts_rows.all()},
        )

    async def since(self, container_id: UUID, after_seq: int, *, limit: int = 10_000) -> list[EventRead]:
        """Events of a container with `seq` above `after_seq`, in stream order (SSE replay)."""
        stmt = (
            select(Event)
            .where(Event.container_id == container_id, Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        )
        return [to_event_read(e) for e in (await self.session.scalars(stmt)).all()]


def _encode_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"e:{event_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "e":
            raise ValueError(cursor)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed([FieldError(field="cursor", message="Invalid cursor.")]) from None
