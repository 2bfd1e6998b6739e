"""Redis adapters (redis.asyncio). Every key and channel gets the configured prefix.

A client belongs to the event loop that created it: build one `Ports` per process / loop.
"""

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import msgspec
from redis.asyncio import Redis
from redis.exceptions import LockError

from infrahaus_domain.ports import InvalidationHandler, LockTimeout
from infrahaus_domain.ports.memory import Handlers

logger = logging.getLogger("infrahaus.ports")

if TYPE_CHECKING:
    from infrahaus_domain.ports import Ports


class RedisCache:
    def __init__(self, client: "Redis[bytes]", prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._redis.get(self._k(key))
        return value

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(self._k(k) for k in keys))

    async def exists(self, key: str) -> bool:
        return bool(await self._redis.exists(self._k(key)))

    async def incr(self, key: str, *, ttl: float) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._k(key))
            # NX: only the first increment of a window sets the expiry.
            pipe.pexpire(self._k(key), int(ttl * 1000), nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def ttl(self, key: str) -> float | None:
        millis = int(await self._redis.pttl(self._k(key)))
        return None if millis < 0 else millis / 1000

    async def sadd(self, key: str, *members: str) -> None:
        if members:
            await self._redis.sadd(self._k(key), *members)

    async def srem(self, key: str, *members: str) -> None:
        if members:
            await self._redis.srem(self._k(key), *members)

    async def smembers(self, key: str) -> set[str]:
        raw: set[bytes] = await self._redis.smembers(self._k(key))
        return {m.decode() for m in raw if m}

    async def set_contains(self, key: str, member: str) -> bool | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._k(key))
            pipe.sismember(self._k(key), member)
            exists, contains = await pipe.execute()
        return bool(contains) if exists else None

    async def replace_set(self, key: str, members: Iterable[str], *, ttl: float) -> None:
        # An empty Redis set does not exist: keep a marker member so "cached and empty" differs from "not cached".
        values = [*members, ""]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k(key))
            pipe.sadd(self._k(key), *values)
            pipe.pexpire(self._k(key), int(ttl * 1000))
            await pipe.execute()

    async def expire(self, key: str, ttl: float) -> None:
        await self._redis.pexpire(self._k(key), int(ttl * 1000))

    # Defined last: inside the class body the name `set` would otherwise shadow the builtin in annotations.
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._redis.set(self._k(key), value, px=None if ttl is None else int(ttl * 1000))


class RedisLock:
    def __init__(self, client: "Redis[bytes]", prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    @asynccontextmanager
    async def hold(self, name: str, *, ttl: float, wait: float) -> AsyncIterator[None]:
        lock = self._redis.lock(f"{self._prefix}lock:{name}", timeout=ttl, blocking_timeout=wait)
        if not await lock.acquire():
            raise LockTimeout(f"Lock {name!r} is held elsewhere.")
        try:
            yield
        finally:
            # Expired (ttl) and possibly taken by someone else: nothing of ours left to release.
            with contextlib.suppress(LockError):
                await lock.release()


class RedisEventBus:
    def __init__(self, client: "Redis[bytes]", prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    async def publish(self, channel: str, data: bytes) -> None:
        await self._redis.publish(f"{self._prefix}events:{channel}", data)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(f"{self._prefix}events:{channel}")

        async def messages() -> AsyncIterator[bytes]:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield message["data"]

        try:
            yield messages()
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


class _Invalidated(msgspec.Struct, array_like=True):
    origin: str
    topic: str
    keys: list[str]


# The longest one read of the invalidation channel waits before the subscriber looks whether it should stop.
_READ_SECONDS = 1.0


class RedisInvalidation:
    """Invalidations over one pub/sub channel; one subscriber task per process, started by the first `listen`.

    A process runs its own handlers in `publish` and skips its own messages when they come back.
    """

    def __init__(self, client: "Redis[bytes]", prefix: str, *, retry_delay: float = 0.1) -> None:
        self._redis = client
        self._channel = f"{prefix}invalidate"
        self._origin = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._handlers = Handlers()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._retry_delay = retry_delay
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    async def publish(self, topic: str, *keys: str) -> None:
        self._handlers.call(topic, keys)
        if keys:
            message = msgspec.msgpack.encode(_Invalidated(origin=self._origin, topic=topic, keys=list(keys)))
            await self._redis.publish(self._channel, message)

    def listen(self, topic: str, handler: InvalidationHandler) -> Callable[[], None]:
        remove = self._handlers.add(topic, handler)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._subscribe())
        return remove

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109 - a plain bound for tests and startup
        """Wait until the subscriber is listening (tests; a process that must not miss the first invalidation)."""
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()

    async def _subscribe(self) -> None:
        delay = self._retry_delay
        lost = False
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                if lost:
                    # Anything remembered while the subscription was down may have missed its invalidation.
                    self._handlers.call_all()
                delay = self._retry_delay
                # Reads bounded in time rather than one blocking `listen()`: redis-py can swallow a cancellation
                # that lands inside its read (seen in about one in 200 app shutdowns, which then waited forever), so
                # the loop also ends on its own once `aclose` asked it to.
                while not self._stopping():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_READ_SECONDS)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._closing:
                    logger.warning("invalidation subscription lost (%s); local caches dropped until it is back", exc)
            finally:
                if self._subscribed.is_set():
                    lost = True
                    self._subscribed.clear()
                    self._handlers.call_all()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
            if self._stopping():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _dispatch(self, data: bytes) -> None:
        try:
            message = msgspec.msgpack.decode(data, type=_Invalidated)
        except msgspec.DecodeError:
            logger.warning("malformed invalidation message ignored")
            return
        if message.origin != self._origin:
            self._handlers.call(message.topic, message.keys)

    def _stopping(self) -> bool:
        return self._closing

    async def aclose(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # A swallowed cancellation still ends the loop after its current read.
        done, _ = await asyncio.wait({task}, timeout=_READ_SECONDS + 5)
        if not done:
            logger.warning("the invalidation subscriber did not stop; abandoned")


def redis_ports(url: str, prefix: str) -> "Ports":
    from infrahaus_domain.ports import Ports

    client: Redis[bytes] = Redis.from_url(url)
    invalidation = RedisInvalidation(client, prefix)

    async def close() -> None:
        await invalidation.aclose()
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose

    return Ports(
        cache=RedisCache(client, prefix),
        lock=RedisLock(client, prefix),
        events=RedisEventBus(client, prefix),
        invalidation=invalidation,
        close=close,
    )
