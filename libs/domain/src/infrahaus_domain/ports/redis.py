"""Redis adapters (redis.asyncio). Every key and channel gets the configured prefix.

A client belongs to the event loop that created it: build one `Ports` per process / loop.
"""

import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import LockError

from infrahaus_domain.ports import LockTimeout

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


def redis_ports(url: str, prefix: str) -> "Ports":
    from infrahaus_domain.ports import Ports

    client: Redis[bytes] = Redis.from_url(url)

    async def close() -> None:
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose

    return Ports(
        cache=RedisCache(client, prefix),
        lock=RedisLock(client, prefix),
        events=RedisEventBus(client, prefix),
        close=close,
    )
