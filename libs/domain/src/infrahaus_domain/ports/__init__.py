"""Ports for shared state between processes: a cache, named locks, an event bus, and invalidation of the caches
each process keeps in its own memory.

Production uses Redis (`infrahaus_domain.ports.redis`); the embedded mode uses in-process adapters
(`infrahaus_domain.ports.memory`), which are thread-safe so an in-process worker thread can share them.
"""

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from infrahaus_domain.errors import DomainError


class LockTimeout(DomainError):  # noqa: N818 - reads better as a condition
    """The lock stayed held by someone else for longer than the caller was willing to wait."""

    code = "busy"


class Cache(Protocol):
    """Byte values and string sets with expiry. Keys are relative: adapters add their prefix."""

    async def get(self, key: str) -> bytes | None: ...
    async def delete(self, *keys: str) -> None: ...
    async def exists(self, key: str) -> bool: ...
    async def incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter; the first increment starts its `ttl` window."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds until `key` expires; None when it does not exist or never expires."""
        ...

    async def sadd(self, key: str, *members: str) -> None: ...
    async def srem(self, key: str, *members: str) -> None: ...
    async def smembers(self, key: str) -> set[str]: ...
    async def set_contains(self, key: str, member: str) -> bool | None:
        """Whether the set at `key` holds `member`; None when there is no such set (one round trip)."""
        ...

    async def replace_set(self, key: str, members: Iterable[str], *, ttl: float) -> None:
        """Atomically replace a set (possibly with an empty one: the key then exists as a marker)."""
        ...

    async def expire(self, key: str, ttl: float) -> None: ...

    # Defined last: inside the class body the name `set` would otherwise shadow the builtin in annotations.
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...


class Lock(Protocol):
    def hold(self, name: str, *, ttl: float, wait: float) -> AbstractAsyncContextManager[None]:
        """Hold the named lock (freed after `ttl` at the latest); raise `LockTimeout` after `wait` seconds."""
        ...


class EventBus(Protocol):
    async def publish(self, channel: str, data: bytes) -> None: ...
    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Subscribe before doing anything else (e.g. replaying history), then iterate the messages."""
        ...


# Called with one key of the topic that is stale, or with None: everything of the topic may be stale.
InvalidationHandler = Callable[[str | None], None]


class Invalidation(Protocol):
    """Cross-process invalidation of in-process caches (what one process remembers in its own memory).

    `publish(topic, *keys)` tells every process of the deployment that the values it keeps under `topic` for `keys`
    are stale: this process's handlers run before `publish` returns, the other processes' as soon as the message
    arrives (Redis pub/sub in production; in embedded mode every part of the one process shares the adapter).
    Pub/sub does not queue messages for a process that is not subscribed, so after any interruption of its
    subscription a process calls every handler with None (drop the whole topic) once it is subscribed again; while
    `connected` is False an in-process cache should not be trusted at all.

    Handlers must be quick and must not block; in embedded mode they may run on another thread than the one that
    registered them (a worker thread publishes), so they must be thread-safe (a `dict.pop` is).
    """

    @property
    def connected(self) -> bool:
        """True while this process receives the other processes' invalidations."""
        ...

    async def publish(self, topic: str, *keys: str) -> None: ...

    def listen(self, topic: str, handler: InvalidationHandler) -> Callable[[], None]:
        """Run `handler` for every invalidation of `topic`; returns what unregisters it. Call it on the process's
        event loop (the Redis adapter starts its subscriber there)."""
        ...


@dataclass(frozen=True)
class Ports:
    """The ports one process uses, plus what closes them."""

    cache: Cache
    lock: Lock
    events: EventBus
    invalidation: Invalidation
    close: "_Closer"


class _Closer(Protocol):
    async def __call__(self) -> None: ...


def build_ports(redis_url: str | None, prefix: str) -> Ports:
    """Redis adapters when `redis_url` is set, in-memory ones otherwise."""
    if redis_url is None:
        from infrahaus_domain.ports.memory import memory_ports

        return memory_ports()
    from infrahaus_domain.ports.redis import redis_ports

    return redis_ports(redis_url, prefix)


__all__ = [
    "Cache",
    "EventBus",
    "Invalidation",
    "InvalidationHandler",
    "Lock",
    "LockTimeout",
    "Ports",
    "build_ports",
]
