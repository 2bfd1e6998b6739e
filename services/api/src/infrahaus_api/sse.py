"""The event streams (`text/event-stream`): a container's progress, and every event of a user.

Every item is an unnamed SSE event (no `event:` line, so a browser's `onmessage` receives them all) whose `data`
is a JSON object naming its kind in `type` (`infrahaus_domain.events.schemas`); nothing is ever named `error`,
which a browser would confuse with a dropped connection. Each stream starts with a `retry:` hint and sends a
comment line every heartbeat interval.

The progress stream: subscribe to the container's EventBus channel first, then replay what is stored (events from
the database, lines from the log buffer) above `Last-Event-ID`, then stream live messages, skipping every id
already sent. Ids come from the container's one sequence (events and log lines share it), so a client that
reconnects with the last id it saw gets every later item exactly once, in order. A `done` item ends the stream
once the latest operation is terminal; it carries the last id, and a reconnect with that id is answered 204 (the
controller asks `ProgressStream.finished`), which makes a browser stop reconnecting.

The event stream (`EventStream`): the user's committed events in the order of their global positions
(`infrahaus_domain.events.positions`); the user's EventBus channel only wakes it, the database says what is new.
"""

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEventMessage

from infrahaus_api.errors import InvalidHeaderError
from infrahaus_domain.events.logbuffer import BusMessage, LogLine, progress_channel
from infrahaus_domain.events.positions import user_events_channel
from infrahaus_domain.events.schemas import EventRead, ProgressDone
from infrahaus_domain.models.containers import TERMINAL_STATUSES, Operation
from infrahaus_domain.services import ProcessResources

_CLOSED = object()
# Events read from the database at a time by the event stream.
STREAM_BATCH = 500
# How long a live item waits for a smaller id that another producer allocated but has not published yet.
GAP_WAIT_SECONDS = 0.5

logger = logging.getLogger("infrahaus.api.sse")


_EVENT_ID = re.compile(r"[0-9]{1,18}")

# What one `data:` of a container's progress stream holds (documented as the stream's schema).
PROGRESS_STREAM_ITEM = EventRead | LogLine | ProgressDone

LastEventId = Annotated[
    str | None,
    Parameter(
        header="Last-Event-ID",
        description="The id of the last item received; a browser's EventSource sends it when it reconnects.",
    ),
]


def stream_spec(item: Any, description: str) -> ResponseSpec:
    """Document a `text/event-stream` answer whose every `data:` is a JSON `item`."""
    return ResponseSpec(
        data_container=item, description=description, media_type="text/event-stream", generate_examples=False
    )


def parse_last_event_id(value: str | None) -> int:
    """The numeric id a client last saw (0 when absent or empty: replay everything). Anything but a decimal id that
    fits 63 bits is a 400 `invalid_header`: replaying everything instead would hide a client's bug."""
    if value is None or not value.strip():
        return 0
    if len(value) > 64 or not _EVENT_ID.fullmatch(value.strip()):
        raise InvalidHeaderError("Last-Event-ID must be the decimal id of an event this stream sent.")
    return int(value.strip())


def _event_message(item: EventRead | LogLine) -> ServerSentEventMessage:
    return ServerSentEventMessage(id=_item_id(item), data=msgspec.json.encode(item).decode())


def retry_hint(retry_ms: int) -> ServerSentEventMessage:
    """The first message of every stream: how long a browser waits before it reconnects."""
    return ServerSentEventMessage(data=None, retry=retry_ms)


def keepalive() -> ServerSentEventMessage:
    return ServerSentEventMessage(comment="keepalive", data=None)


def _item_id(item: EventRead | LogLine) -> int:
    return item.id if isinstance(item, LogLine) else item.seq


def _is_recent(item: EventRead | LogLine, within: float) -> bool:
    at = item.at if isinstance(item, LogLine) else item.created_at
    return (datetime.now(UTC) - at).total_seconds() < within


def _done(last: int, operation_id: UUID | None, status: Any) -> ServerSentEventMessage:
    # The last item's id again: a browser that reconnects after `done` sends it and is answered 204.
    done = ProgressDone(operation_id=operation_id, status=status)
    return ServerSentEventMessage(id=last or None, data=msgspec.json.encode(done).decode())


class ProgressStream:
    """One client's stream; `__aiter__` yields SSE messages until the latest operation is terminal."""

    def __init__(
        self,
        container_id: UUID,
        *,
        last_event_id: int,
        resources: ProcessResources,
        heartbeat: float,
        retry_ms: int = 2000,
        gap_wait: float = GAP_WAIT_SECONDS,
    ) -> None:
        self.container_id = container_id
        self.last = last_event_id
        self.resources = resources
        self.logbuffer = resources.logbuffer
        self.bus = resources.ports.events
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self.gap_wait = gap_wait

    async def finished(self) -> bool:
        """True when the client has seen everything: its latest operation is over and nothing is stored after
        its id (a reconnect after `done`, answered 204 instead of the same `done` again)."""
        op = await self._latest_operation()
        if op is not None and op.status not in TERMINAL_STATUSES:
            return False
        return not await self._stored_since(self.last)

    async def __aiter__(self) -> AsyncIterator[ServerSentEventMessage]:
        yield retry_hint(self.retry_ms)
        async with self.bus.subscribe(progress_channel(self.container_id)) as messages:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            pump = asyncio.create_task(self._pump(messages, queue))
            try:
                async for message in self._run(queue):
                    yield message
            finally:
                await _stop_pump(pump)

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
            yield _done(self.last, op.id if op else None, op.status if op else None)
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
                yield keepalive()
                # Covers an operation message missed while a worker published before our subscription.
                op = await self._latest_operation()
                if op is None or op.id != tracked or op.status in TERMINAL_STATUSES:
                    for item in await self._stored_since(self.last):
                        yield self._advance(item)
                    yield _done(self.last, op.id if op else None, op.status if op else None)
                    return
                continue
            if raw is _CLOSED:
                return
            message = msgspec.json.decode(raw, type=BusMessage)
            if message.kind == "operation":
                if message.data.get("id") == str(tracked) and message.data.get("status") in TERMINAL_STATUSES:
                    # The end is published after its transaction committed, but the bus may deliver that
                    # transaction's own events after it: read them from the store, so none is left out.
                    for item in await self._stored_since(self.last):
                        pending.setdefault(_item_id(item), item)
                    for ident in sorted(pending):
                        yield self._advance(pending.pop(ident))
                    yield _done(self.last, tracked, message.data["status"])
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
        async with self.resources.unit() as services:
            return await services.operations.latest_for_container(self.container_id)

    async def _stored_since(self, after: int) -> list[EventRead | LogLine]:
        # The buffer has the recent items (events too, even before their transaction commits); the database has
        # the events older than the buffer's reach. Same id, same item: keep one.
        async with self.resources.unit() as services:
            events = await services.events.since(self.container_id, after)
        merged: dict[int, EventRead | LogLine] = {e.seq: e for e in events}
        for message in await self.logbuffer.items(self.container_id, after=after):
            if message.id is not None and message.id not in merged:
                merged[message.id] = _decode(message)
        return [merged[i] for i in sorted(merged)]


def _decode(message: BusMessage) -> EventRead | LogLine:
    if message.kind == "event":
        return msgspec.convert(message.data, EventRead, strict=False)
    return msgspec.convert(message.data, LogLine, strict=False)


class EventStream:
    """One client's stream of every event of `user_id` (optionally of one container, one node, some types)."""

    def __init__(
        self,
        user_id: UUID,
        *,
        after: int,
        resources: ProcessResources,
        heartbeat: float,
        retry_ms: int,
        container_id: UUID | None = None,
        node_id: UUID | None = None,
        types: Sequence[str] = (),
    ) -> None:
        self.user_id = user_id
        self.last = after
        self.resources = resources
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self.filters: dict[str, Any] = {"container_id": container_id, "node_id": node_id, "types": tuple(types)}

    async def __aiter__(self) -> AsyncIterator[ServerSentEventMessage]:
        yield retry_hint(self.retry_ms)
        async with self.resources.ports.events.subscribe(user_events_channel(self.user_id)) as wakeups:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            pump = asyncio.create_task(ProgressStream._pump(wakeups, queue))
            try:
                while True:
                    # Subscribed before the first read: nothing committed from here on can be missed.
                    batch = await self._next_batch()
                    for position, event in batch:
                        self.last = position
                        yield ServerSentEventMessage(id=position, data=msgspec.json.encode(event).decode())
                    if len(batch) == STREAM_BATCH:
                        continue  # a backlog (a resume after a long absence): the next batch at once
                    try:
                        raw = await asyncio.wait_for(queue.get(), timeout=self.heartbeat)
                    except TimeoutError:
                        # The loop reads again: a wake-up lost with a Redis restart costs one heartbeat.
                        yield keepalive()
                        continue
                    if raw is _CLOSED:
                        return
                    while not queue.empty():  # one read answers every wake-up that arrived meanwhile
                        if queue.get_nowait() is _CLOSED:
                            return
            finally:
                await _stop_pump(pump)

    async def _next_batch(self) -> list[tuple[int, EventRead]]:
        async with self.resources.unit() as services:
            return await services.events.stream_page(self.user_id, after=self.last, limit=STREAM_BATCH, **self.filters)


async def _stop_pump(pump: "asyncio.Task[None]") -> None:
    """Cancel a stream's subscription reader and wait for it, boundedly: redis-py can swallow a cancellation that
    lands inside its read, and a stream must still end (closing the subscription then ends that read)."""
    pump.cancel()
    done, _ = await asyncio.wait({pump}, timeout=2.0)
    if not done:
        logger.warning("a stream's subscription reader did not stop when cancelled; closing the subscription")
