"""In-process adapters for the embedded mode. Thread-safe: the in-process worker runs its own event loop."""

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from infrahaus_domain.ports import InvalidationHandler, LockTimeout

logger = logging.getLogger("infrahaus.ports")

if TYPE_CHECKING:
    from infrahaus_domain.ports import Ports


class MemoryCache:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._values: dict[str, tuple[bytes | set[str] | int, float | None]] = {}

    def _live(self, key: str) -> bytes | set[str] | int | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._values[key]
            return None
        return value

    @staticmethod
    def _deadline(ttl: float | None) -> float | None:
        return None if ttl is None else time.monotonic() + ttl

    async def get(self, key: str) -> bytes | None:
        with self._guard:
            value = self._live(key)
            return value if isinstance(value, bytes) else None

    async def delete(self, *keys: str) -> None:
        with self._guard:
            for key in keys:
                self._values.pop(key, None)

    async def exists(self, key: str) -> bool:
        with self._guard:
            return self._live(key) is not None

    async def incr(self, key: str, *, ttl: float) -> int:
        with self._guard:
            value = self._live(key)
            if isinstance(value, int):
                count = value + 1
                self._values[key] = (count, self._values[key][1])
            else:
                count = 1
                self._values[key] = (count, self._deadline(ttl))
            return count

    async def ttl(self, key: str) -> float | None:
        with self._guard:
            if self._live(key) is None:
                return None
            expires = self._values[key][1]
            return None if expires is None else max(0.0, expires - time.monotonic())

    async def sadd(self, key: str, *members: str) -> None:
        with self._guard:
            value = self._live(key)
            if isinstance(value, set):
                value.update(members)
            else:
                self._values[key] = (set(members), None)

    async def srem(self, key: str, *members: str) -> None:
        with self._guard:
            value = self._live(key)
            if isinstance(value, set):
                value.difference_update(members)

    async def smembers(self, key: str) -> set[str]:
        with self._guard:
            value = self._live(key)
            return set(value) if isinstance(value, set) else set()

    async def set_contains(self, key: str, member: str) -> bool | None:
        with self._guard:
            value = self._live(key)
            return member in value if isinstance(value, set) else None

    async def replace_set(self, key: str, members: Iterable[str], *, ttl: float) -> None:
        with self._guard:
            self._values[key] = (set(members), self._deadline(ttl))

    async def expire(self, key: str, ttl: float) -> None:
        with self._guard:
            value = self._live(key)
            if value is not None:
                self._values[key] = (value, self._deadline(ttl))

    # Defined last: inside the class body the name `set` would otherwise shadow the builtin in annotations.
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with self._guard:
            self._values[key] = (value, self._deadline(ttl))


class MemoryLock:
    def __init__(self, poll_interval: float = 0.01) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}
        self._poll = poll_interval

    def _try(self, name: str, token: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._guard:
            current = self._held.get(name)
            if current is not None and current[1] > now:
                return False
            self._held[name] = (token, now + ttl)
            return True

    @asynccontextmanager
    async def hold(self, name: str, *, ttl: float, wait: float) -> AsyncIterator[None]:
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait
        while not self._try(name, token, ttl):
            if time.monotonic() >= deadline:
                raise LockTimeout(f"Lock {name!r} is held elsewhere.")
            await asyncio.sleep(self._poll)
        try:
            yield
        finally:
            with self._guard:
                if self._held.get(name, ("", 0.0))[0] == token:
                    del self._held[name]


class MemoryEventBus:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._subscribers: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[bytes]]]] = {}

    async def publish(self, channel: str, data: bytes) -> None:
        with self._guard:
            targets = list(self._subscribers.get(channel, ()))
        for loop, queue in targets:
            loop.call_soon_threadsafe(queue.put_nowait, data)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        entry = (asyncio.get_running_loop(), asyncio.Queue[bytes]())
        with self._guard:
            self._subscribers.setdefault(channel, []).append(entry)

        async def messages() -> AsyncIterator[bytes]:
            while True:
                yield await entry[1].get()

        try:
            yield messages()
        finally:
            with self._guard:
                subscribers = self._subscribers.get(channel, [])
                if entry in subscribers:
                    subscribers.remove(entry)
                if not subscribers:
                    self._subscribers.pop(channel, None)


class Handlers:
    """Invalidation handlers by topic, shared by both adapters (thread-safe registration and dispatch)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._by_topic: dict[str, list[InvalidationHandler]] = {}

    def add(self, topic: str, handler: InvalidationHandler) -> Callable[[], None]:
        with self._guard:
            self._by_topic.setdefault(topic, []).append(handler)

        def remove() -> None:
            with self._guard:
                handlers = self._by_topic.get(topic, [])
                if handler in handlers:
                    handlers.remove(handler)

        return remove

    def call(self, topic: str, keys: Iterable[str | None]) -> None:
        with self._guard:
            handlers = list(self._by_topic.get(topic, ()))
        for key in keys:
            for handler in handlers:
                try:
                    handler(key)
                except Exception:  # one broken cache must not keep the others stale
                    logger.exception("invalidation handler of %s failed", topic)

    def call_all(self) -> None:
        """Every handler of every topic with None (everything may be stale)."""
        with self._guard:
            topics = list(self._by_topic)
        for topic in topics:
            self.call(topic, [None])


class MemoryInvalidation:
    """One process: `publish` runs the handlers at once, in the caller's thread."""

    def __init__(self) -> None:
        self.handlers = Handlers()

    @property
    def connected(self) -> bool:
        return True

    async def publish(self, topic: str, *keys: str) -> None:
        self.handlers.call(topic, keys)

    def listen(self, topic: str, handler: InvalidationHandler) -> Callable[[], None]:
        return self.handlers.add(topic, handler)


def memory_ports() -> "Ports":
    from infrahaus_domain.ports import Ports

    async def close() -> None:
        return None

    return Ports(
        cache=MemoryCache(), lock=MemoryLock(), events=MemoryEventBus(), invalidation=MemoryInvalidation(), close=close
    )
