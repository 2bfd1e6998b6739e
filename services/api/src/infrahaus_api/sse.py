"""The progress stream of a container (`text/event-stream`).

Order of work: subscribe to the container's EventBus channel first, then replay what is stored (events from the
database, lines from the log buffer) above `Last-Event-ID`, then stream live messages, skipping every id already
sent. Ids come from the container's one sequence (events and log lines share it), so a client that reconnects
with the last id it saw gets every later item exactly once, in order. A comment line goes out every heartbeat
interval; a `done` event (no id) ends the stream once the latest operation is terminal.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar.response import ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.events.logbuffer import BusMessage, LogBuffer, LogLine, progress_channel
from infrahaus_domain.events.schemas import EventRead
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import TERMINAL_STATUSES, Operation
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.ports import EventBus

_CLOSED = object()
# How long a live item waits for a smaller id that another producer allocated but has not published yet.
GAP_WAIT_SECONDS = 0.5


def parse_last_event_id(value: str | None) -> int:
    """The numeric id a client last saw (0 when absent or not a number: replay everything)."""
    if value is None:
        return 0
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return 0


def _event_message(item: EventRead | LogLine) -> ServerSentEventMessage:
    if isinstance(item, LogLine):
        return ServerSentEventMessage(id=item.id, event="log", data=msgspec.json.encode(item).decode())
    return ServerSentEventMessage(id=item.seq, event=item.type, data=msgspec.json.encode(item).decode())


def _item_id(item: EventRead | LogLine) -> int:
    return item.id if isinstance(item, LogLine) else item.seq


def _is_recent(item: EventRead | LogLine, within: float) -> bool:
    at = item.at if isinstance(item, LogLine) else item.created_at
    return (datetime.now(UTC) - at).total_seconds() < within


def _done(op: Operation | None) -> ServerSentEventMessage:
    data = {"operation_id": str(op.id) if op else None, "status": op.status if op else None}
    return ServerSentEventMessage(event="done", data=msgspec.json.encode(data).decode())


class ProgressStream:
    """One client's stream; `__aiter__` yields SSE messages until the latest operation is terminal."""

    def __init__(
        self,
        container_id: UUID,
        *,
        last_event_id: int,
        sessionmaker: async_sessionmaker[AsyncSession],
        logbuffer: LogBuffer,
        bus: EventBus,
        heartbeat: float,
        gap_wait: float = GAP_WAIT_SECONDS,
    ) -> None:
        self.container_id = container_id
        self.last = last_event_id
        self.sessionmaker = sessionmaker
        self.logbuffer = logbuffer
        self.bus = bus
        self.heartbeat = heartbeat
        self.gap_wait = gap_wait

    async def __aiter__(self) -> AsyncIterator[ServerSentEventMessage]:
        async with self.bus.subscribe(progress_channel(self.container_id)) as messages:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            pump = asyncio.create_task(self._pump(messages, queue))
            try:
                async for message in self._run(queue):
                    yield message
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    @staticmethod
    async def _pump(messages: AsyncIterator[bytes], queue: "asyncio.Queue[Any]") -> None:
        # A separate task reads the subscription, so waiting with a timeout never cancels the subscription itself.
        try:
            async for raw in messages:
                await queue.put(raw)
        finally:
            await queue.put(_CLOSED)

    async def _run(self, queue: "asyncio.Queue[Any]") -> AsyncIterator[ServerSentEventMessage]:
        op = await self._latest_operation()
        stored = await self._stored_since(self.last)
        active = op is not None and op.status not in TERMINAL_STATUSES
        loop = asyncio.get_running_loop()
        # Items that arrived ahead of a missing id (two producers raced); held briefly so the stream stays in order.
        pending: dict[int, EventRead | LogLine] = {}
        gap_deadline: float | None = None
        for index, item in enumerate(stored):
            if active and _item_id(item) != self.last + 1 and _is_recent(item, self.gap_wait):
                # A fresh item behind a hole: the hole is an id still being published, not a trimmed old line.
                pending = {_item_id(i): i for i in stored[index:]}
                gap_deadline = loop.time() + self.gap_wait
                break
            yield self._advance(item)
        if op is None or not active:
            yield _done(op)
            return
        tracked = op.id
        while True:
            timeout = self.heartbeat if gap_deadline is None else max(0.0, gap_deadline - loop.time())
            try:
                raw = await asyncio.wait_for(queue.get(), timeout=timeout)
            except TimeoutError:
                if gap_deadline is not None:
                    # The missing id never came (its producer died): move on rather than stall.
                    for ident in sorted(pending):
                        yield self._advance(pending.pop(ident))
                    gap_deadline = None
                    continue
                yield ServerSentEventMessage(comment="keepalive", data=None)
                # Covers an operation message missed while a worker published before our subscription.
                op = await self._latest_operation()
                if op is None or op.id != tracked or op.status in TERMINAL_STATUSES:
                    for item in await self._stored_since(self.last):
                        yield self._advance(item)
                    yield _done(op)
                    return
                continue
            if raw is _CLOSED:
                return
            message = msgspec.json.decode(raw, type=BusMessage)
            if message.kind == "operation":
                if message.data.get("id") == str(tracked) and message.data.get("status") in TERMINAL_STATUSES:
                    for ident in sorted(pending):
                        yield self._advance(pending.pop(ident))
                    yield ServerSentEventMessage(
                        event="done",
                        data=msgspec.json.encode(
                            {"operation_id": str(tracked), "status": message.data["status"]}
                        ).decode(),
                    )
                    return
                continue
            if message.id is None or message.id <= self.last or message.id in pending:
                continue
            pending[message.id] = _decode(message)
            while self.last + 1 in pending:
                yield self._advance(pending.pop(self.last + 1))
            if not pending:
                gap_deadline = None
            elif gap_deadline is None:
                gap_deadline = loop.time() + self.gap_wait

    def _advance(self, item: EventRead | LogLine) -> ServerSentEventMessage:
        self.last = _item_id(item)
        return _event_message(item)

    async def _latest_operation(self) -> Operation | None:
        async with self.sessionmaker() as session:
            events = EventService(session, logbuffer=self.logbuffer)
            return await OperationService(session, events=events).latest_for_container(self.container_id)

    async def _stored_since(self, after: int) -> list[EventRead | LogLine]:
        # The buffer has the recent items (events too, even before their transaction commits); the database has
        # the events older than the buffer's reach. Same id, same item: keep one.
        async with self.sessionmaker() as session:
            events = await EventService(session, logbuffer=self.logbuffer).since(self.container_id, after)
        merged: dict[int, EventRead | LogLine] = {e.seq: e for e in events}
        for message in await self.logbuffer.items(self.container_id, after=after):
            if message.id is not None and message.id not in merged:
                merged[message.id] = _decode(message)
        return [merged[i] for i in sorted(merged)]


def _decode(message: BusMessage) -> EventRead | LogLine:
    if message.kind == "event":
        return msgspec.convert(message.data, EventRead, strict=False)
    return msgspec.convert(message.data, LogLine, strict=False)
