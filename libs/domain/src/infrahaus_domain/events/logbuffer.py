"""The bounded progress log of each container, and the per-container id sequence shared with its events.

Every event (`EventService.record`) and every log line (`LogBuffer.append`) of one container takes its id from one
counter (`LogStore.next_seq`), so the SSE stream can interleave both and resume from a single `Last-Event-ID`.
The counter never goes below the largest id already stored in the database (the `floor`), so losing Redis or
restarting an embedded process cannot make ids run backwards past the persisted events.

Events are also appended to the buffer (besides their database row) before they are published: a stream that
subscribes and then replays the buffer therefore sees every item of a sequential producer (the worker) even while
the producer's transaction is still open. The database keeps events beyond the buffer's reach.

Items live in a Redis list when Redis is configured, in process memory otherwise (thread-safe, so the embedded
mode's worker threads share it with the API): the last `max_lines` lines, kept `ttl` seconds after the last write.
"""

import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Literal, Protocol
from uuid import UUID

import msgspec
from redis.asyncio import Redis

from infrahaus_domain.ports import EventBus

MAX_LINES = 2000
# One stored line at most (in characters): with MAX_LINES, a container's buffer stays under ~18 MiB whatever a
# script prints. The SSH runner cuts lines at 8 KiB already (plus its note of how much it cut, which fits here);
# this bounds every other producer too.
MAX_LINE_CHARS = 9 * 1024
TTL_SECONDS = 48 * 3600

Stream = Literal["stdout", "stderr", "info"]


class LogLine(msgspec.Struct, kw_only=True, frozen=True):
    """One line of output of a creation step, with its place in the container's id sequence (`type` is always
    `log`: on the progress stream it tells a line from an event)."""

    type: Literal["log"] = "log"
    id: int
    operation_id: str | None
    step: str
    script: str | None = None
    stream: Stream = "stdout"
    line: str
    at: datetime


class BusMessage(msgspec.Struct, kw_only=True, frozen=True):
    """What goes over the EventBus channel of a container.

    `kind` is "event" (data: an EventRead as a dict), "log" (data: a LogLine) or "operation" (data: the operation's
    id, status, progress, step: no sequence id, it only tells listeners to look at the operation again).
    """

    kind: Literal["event", "log", "operation"]
    id: int | None = None
    data: dict[str, object]


def progress_channel(container_id: UUID) -> str:
    """The EventBus channel carrying a container's events, log lines and operation changes."""
    return f"container:{container_id}"


class LogStore(Protocol):
    """Storage behind the log buffer: a sequence counter and a bounded list of encoded items per container."""

    async def next_seq(self, container_id: UUID, floor: int = 0) -> int:
        """Atomically allocate the next id of the container: greater than every earlier one and than `floor`."""
        ...

    async def push(self, container_id: UUID, item: bytes, *, max_lines: int, ttl: float) -> None: ...
    async def read(self, container_id: UUID) -> list[bytes]: ...
    async def clear(self, container_id: UUID) -> None: ...


_NEXT_SEQ_LUA = """
local v = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if v <= floor then
  v = floor + 1
  redis.call('SET', KEYS[1], v)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return v
"""


class RedisLogStore:
    """Redis list per container (`LPUSH`-free: `RPUSH` + `LTRIM` keep the newest lines) and an `INCR` counter."""

    def __init__(self, client: "Redis[bytes]", prefix: str, *, seq_ttl: float = TTL_SECONDS) -> None:
        self._redis = client
        self._prefix = prefix
        self._seq_ttl_ms = int(seq_ttl * 1000)
        self._next_seq = client.register_script(_NEXT_SEQ_LUA)

    def _keys(self, container_id: UUID) -> tuple[str, str]:
        return f"{self._prefix}progress:{container_id}:seq", f"{self._prefix}progress:{container_id}:lines"

    async def next_seq(self, container_id: UUID, floor: int = 0) -> int:
        seq_key, _ = self._keys(container_id)
        return int(await self._next_seq(keys=[seq_key], args=[floor, self._seq_ttl_ms]))

    async def push(self, container_id: UUID, item: bytes, *, max_lines: int, ttl: float) -> None:
        _, lines_key = self._keys(container_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(lines_key, item)
            pipe.ltrim(lines_key, -max_lines, -1)
            pipe.pexpire(lines_key, int(ttl * 1000))
            await pipe.execute()

    async def read(self, container_id: UUID) -> list[bytes]:
        _, lines_key = self._keys(container_id)
        items: list[bytes] = await self._redis.lrange(lines_key, 0, -1)
        return items

    async def clear(self, container_id: UUID) -> None:
        await self._redis.delete(*self._keys(container_id))

    async def aclose(self) -> None:
        """Close the Redis client (the store owns it when built by `build_log_store`)."""
        await self._redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


class MemoryLogStore:
    """In-process store for the embedded mode; one instance must be shared by the API and the worker threads."""

    def __init__(self, *, seq_ttl: float = TTL_SECONDS) -> None:
        self._guard = threading.Lock()
        self._seq: dict[UUID, tuple[int, float]] = {}
        self._lines: dict[UUID, tuple[deque[bytes], float]] = {}
        self._seq_ttl = seq_ttl

    async def next_seq(self, container_id: UUID, floor: int = 0) -> int:
        now = time.monotonic()
        with self._guard:
            current, expires = self._seq.get(container_id, (0, now + 1))
            if expires <= now:
                current = 0
            value = max(current, floor) + 1
            self._seq[container_id] = (value, now + self._seq_ttl)
            return value

    async def push(self, container_id: UUID, item: bytes, *, max_lines: int, ttl: float) -> None:
        now = time.monotonic()
        with self._guard:
            lines, expires = self._lines.get(container_id, (deque(maxlen=max_lines), now + ttl))
            if expires <= now:
                lines = deque(maxlen=max_lines)
            lines.append(item)
            self._lines[container_id] = (lines, now + ttl)
            self._drop_expired(now)

    async def read(self, container_id: UUID) -> list[bytes]:
        now = time.monotonic()
        with self._guard:
            lines, expires = self._lines.get(container_id, (deque(), now))
            return list(lines) if expires > now else []

    async def clear(self, container_id: UUID) -> None:
        with self._guard:
            self._lines.pop(container_id, None)
            self._seq.pop(container_id, None)

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._lines.items() if expires <= now]:
            del self._lines[key]


def build_log_store(redis_url: str | None, prefix: str) -> LogStore:
    """A Redis store when `redis_url` is set (its own client, bound to the calling loop), memory otherwise."""
    if redis_url is None:
        return MemoryLogStore()
    return RedisLogStore(Redis.from_url(redis_url), prefix)


class LogBuffer:
    """Appends and reads the progress lines of containers, publishing each line to the container's channel."""

    def __init__(self, store: LogStore, bus: EventBus, *, max_lines: int = MAX_LINES, ttl: float = TTL_SECONDS) -> None:
        self.store = store
        self.bus = bus
        self._max_lines = max_lines
        self._ttl = ttl

    async def next_seq(self, container_id: UUID, floor: int = 0) -> int:
        """Allocate the container's next id (used by `EventService.record` for events)."""
        return await self.store.next_seq(container_id, floor)

    async def append(
        self,
        container_id: UUID,
        operation_id: UUID | None,
        *,
        step: str,
        script: str | None = None,
        stream: Stream = "stdout",
        line: str,
    ) -> LogLine:
        """Store one output line (cut to `MAX_LINE_CHARS`; the buffer trimmed to the newest `max_lines`) and publish
        it live. Never pass secrets."""
        if len(line) > MAX_LINE_CHARS:
            line = f"{line[:MAX_LINE_CHARS]} [... {len(line) - MAX_LINE_CHARS} more characters cut]"
        entry = LogLine(
            id=await self.store.next_seq(container_id),
            operation_id=None if operation_id is None else str(operation_id),
            step=step,
            script=script,
            stream=stream,
            line=line,
            at=datetime.now(UTC),
        )
        await self._push_and_publish(container_id, BusMessage(kind="log", id=entry.id, data=msgspec.to_builtins(entry)))
        return entry

    async def append_event(self, container_id: UUID, seq: int, data: dict[str, object]) -> None:
        """Buffer and publish an event already given its `seq` (called by `EventService.record`)."""
        await self._push_and_publish(container_id, BusMessage(kind="event", id=seq, data=data))

    async def _push_and_publish(self, container_id: UUID, message: BusMessage) -> None:
        encoded = msgspec.json.encode(message)
        await self.store.push(container_id, encoded, max_lines=self._max_lines, ttl=self._ttl)
        await self.bus.publish(progress_channel(container_id), encoded)

    async def lines(
        self, container_id: UUID, *, after: int = 0, script: str | None = None, limit: int = MAX_LINES
    ) -> list[LogLine]:
        """Buffered lines with an id above `after` (optionally of one script), oldest first."""
        decoded = [
            msgspec.convert(m.data, LogLine, strict=False)
            for m in await self.items(container_id, after=after)
            if m.kind == "log"
        ]
        return [e for e in decoded if script is None or e.script == script][:limit]

    async def items(self, container_id: UUID, *, after: int = 0) -> list[BusMessage]:
        """Buffered events and lines with an id above `after`, in id order (SSE replay)."""
        decoded = [msgspec.json.decode(raw, type=BusMessage) for raw in await self.store.read(container_id)]
        return sorted((m for m in decoded if m.id is not None and m.id > after), key=lambda m: m.id or 0)

    async def clear(self, container_id: UUID) -> None:
        """Forget a container's lines and counter (after the container was removed)."""
        await self.store.clear(container_id)

    async def publish(self, container_id: UUID, message: BusMessage) -> None:
        """Send a message to the container's channel (SSE listeners)."""
        await self.bus.publish(progress_channel(container_id), msgspec.json.encode(message))
