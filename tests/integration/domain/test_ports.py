"""Cache, lock and event bus: the Redis adapters (against the real Redis) and the in-memory ones, same contract."""

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from infrahaus_domain.ports import LockTimeout, Ports, build_ports
from infrahaus_domain.ports.redis import RedisInvalidation
from tests.fixtures.private_services import PrivateRedis


@pytest.fixture(params=["memory", "redis"])
async def ports(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> AsyncIterator[Ports]:
    built = build_ports(None if request.param == "memory" else redis_url, f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
    yield built
    await built.close()


async def test_values_with_ttl(ports: Ports) -> None:
    cache = ports.cache
    assert await cache.get("k") is None
    await cache.set("k", b"v1")
    assert await cache.get("k") == b"v1"
    assert await cache.exists("k")
    assert await cache.ttl("k") is None
    await cache.set("short", b"x", ttl=0.3)
    remaining = await cache.ttl("short")
    assert remaining is not None
    assert 0 < remaining <= 0.3
    deadline = asyncio.get_running_loop().time() + 5
    while await cache.get("short") is not None:
        assert asyncio.get_running_loop().time() < deadline, "value did not expire"
        await asyncio.sleep(0.05)
    await cache.delete("k", "missing")
    assert not await cache.exists("k")


async def test_counters_keep_their_first_window(ports: Ports) -> None:
    cache = ports.cache
    assert await cache.incr("c", ttl=60) == 1
    first = await cache.ttl("c")
    assert await cache.incr("c", ttl=600) == 2
    later = await cache.ttl("c")
    assert first is not None
    assert later is not None
    assert later <= first <= 60


async def test_sets(ports: Ports) -> None:
    cache = ports.cache
    assert await cache.smembers("s") == set()
    assert not await cache.exists("s")
    await cache.sadd("s", "100", "101")
    await cache.sadd("s", "102")
    await cache.srem("s", "101")
    assert await cache.smembers("s") == {"100", "102"}
    await cache.replace_set("s", ["200"], ttl=60)
    assert await cache.smembers("s") == {"200"}
    await cache.replace_set("empty", [], ttl=60)
    assert await cache.exists("empty")  # "cached, nothing taken" differs from "not cached"
    assert await cache.smembers("empty") == set()
    # One member asked for: None for no set at all, else whether it holds the member.
    assert await cache.set_contains("missing", "200") is None
    assert await cache.set_contains("s", "200") is True
    assert await cache.set_contains("s", "100") is False
    assert await cache.set_contains("empty", "200") is False
    await cache.expire("s", 0.2)
    deadline = asyncio.get_running_loop().time() + 5
    while await cache.exists("s"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


async def test_lock_excludes_and_frees(ports: Ports) -> None:
    async with ports.lock.hold("node:1", ttl=10, wait=1):
        with pytest.raises(LockTimeout):
            async with ports.lock.hold("node:1", ttl=10, wait=0.1):
                pass
        async with ports.lock.hold("node:2", ttl=10, wait=0.1):
            pass
    async with ports.lock.hold("node:1", ttl=10, wait=0.1):
        pass


async def test_lock_ttl_frees_a_dead_holder(ports: Ports) -> None:
    holder = ports.lock.hold("crashy", ttl=0.3, wait=1)
    await holder.__aenter__()  # never released, as if the holder died
    async with ports.lock.hold("crashy", ttl=5, wait=5):
        pass


async def test_event_bus_delivers_to_every_subscriber(ports: Ports) -> None:
    async with (
        ports.events.subscribe("op:1") as first,
        ports.events.subscribe("op:1") as second,
        ports.events.subscribe("op:2") as other,
    ):
        await ports.events.publish("op:1", b"hello")
        await ports.events.publish("op:1", b"world")
        assert await asyncio.wait_for(anext(first), 5) == b"hello"
        assert await asyncio.wait_for(anext(first), 5) == b"world"
        assert await asyncio.wait_for(anext(second), 5) == b"hello"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(other), 0.2)


async def test_redis_keys_carry_the_prefix(redis_url: str, redis_prefix: str) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
    built = build_ports(redis_url, prefix)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await built.cache.set("vmids:node", b"1")
        assert await raw.get(f"{prefix}vmids:node") == b"1"
        assert await raw.get("vmids:node") is None
    finally:
        await raw.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        await built.close()


async def test_memory_bus_accepts_publishers_from_another_thread() -> None:
    ports = build_ports(None, "x:")
    loop = asyncio.get_running_loop()
    async with ports.events.subscribe("progress") as messages:

        def worker_thread() -> None:
            asyncio.run(ports.events.publish("progress", b"from-thread"))

        thread = threading.Thread(target=worker_thread)
        thread.start()
        assert await asyncio.wait_for(anext(messages), 5) == b"from-thread"
        await loop.run_in_executor(None, thread.join)


class Seen:
    """What one process's handler of a topic received."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self.arrived = threading.Event()

    def __call__(self, key: str | None) -> None:
        self.keys.append(key)
        self.arrived.set()

    async def wait_for(self, key: str | None) -> None:
        deadline = asyncio.get_running_loop().time() + 5
        while key not in self.keys:
            assert asyncio.get_running_loop().time() < deadline, f"{key!r} never arrived; got {self.keys}"
            await asyncio.sleep(0.01)


async def _subscribed(ports: Ports) -> None:
    wait = getattr(ports.invalidation, "wait_connected", None)
    if wait is not None:
        await wait(5)
    assert ports.invalidation.connected


async def test_invalidation_reaches_this_process_at_once_and_the_others_soon(redis_url: str, redis_prefix: str) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
    here, there, elsewhere = (build_ports(redis_url, prefix) for _ in range(3))
    try:
        mine, theirs, other_topic = Seen(), Seen(), Seen()
        here.invalidation.listen("inventory", mine)
        there.invalidation.listen("inventory", theirs)
        elsewhere.invalidation.listen("sessions", other_topic)
        for ports in (here, there, elsewhere):
            await _subscribed(ports)
        mine.keys.clear()
        theirs.keys.clear()
        other_topic.keys.clear()

        await here.invalidation.publish("inventory", "node-1", "node-2")
        assert mine.keys == ["node-1", "node-2"]  # before publish returned, and only once (own echo skipped)
        await theirs.wait_for("node-2")
        assert theirs.keys == ["node-1", "node-2"]
        await asyncio.sleep(0.1)
        assert mine.keys == ["node-1", "node-2"]
        assert other_topic.keys == []
    finally:
        for ports in (here, there, elsewhere):
            await ports.close()


async def test_memory_invalidation_reaches_handlers_of_every_thread() -> None:
    ports = build_ports(None, "")
    seen, unregistered = Seen(), Seen()
    remove = ports.invalidation.listen("vmids", unregistered)
    ports.invalidation.listen("vmids", seen)
    remove()
    assert ports.invalidation.connected

    def publish_from_another_thread() -> None:
        asyncio.run(ports.invalidation.publish("vmids", "node-9"))

    await asyncio.to_thread(publish_from_another_thread)
    assert seen.keys == ["node-9"]
    assert unregistered.keys == []
    await ports.close()


async def test_invalidation_after_a_redis_restart_drops_everything_then_flows_again(
    private_redis: PrivateRedis,
) -> None:
    prefix = f"restart-{uuid.uuid4().hex[:8]}:"
    here, there = build_ports(private_redis.url, prefix), build_ports(private_redis.url, prefix)
    try:
        theirs = Seen()
        there.invalidation.listen("inventory", theirs)
        await _subscribed(there)
        theirs.keys.clear()

        await asyncio.to_thread(private_redis.restart)
        # Whatever was published while the subscriber was away is lost: the subscriber must have said "all stale".
        await theirs.wait_for(None)
        await _subscribed(there)
        deadline = asyncio.get_running_loop().time() + 10
        while "after" not in theirs.keys:
            assert asyncio.get_running_loop().time() < deadline, theirs.keys
            # The publisher's own connection is coming back too.
            with contextlib.suppress(OSError, aioredis.RedisError):
                await here.invalidation.publish("inventory", "after")
            await asyncio.sleep(0.1)
    finally:
        await here.close()
        await there.close()


async def test_closing_ends_a_subscriber_whose_read_swallowed_its_cancellation(
    redis_url: str, redis_prefix: str
) -> None:
    """redis-py sometimes swallows a cancellation that lands inside its pub/sub read (seen in about one in 200 app
    shutdowns, which then waited forever). Closing must end such a subscriber too."""
    client: aioredis.Redis[bytes] = aioredis.Redis.from_url(redis_url)
    invalidation = RedisInvalidation(client, f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
    real_pubsub = client.pubsub
    swallowed: list[bool] = []

    def stubborn_pubsub(**kwargs: Any) -> Any:
        pubsub = real_pubsub(**kwargs)
        real_get_message = pubsub.get_message

        async def get_message(**read: Any) -> Any:
            try:
                return await real_get_message(**read)
            except asyncio.CancelledError:
                swallowed.append(True)  # and carry on as if nothing came, like the library does
                return None

        pubsub.get_message = get_message  # type: ignore[method-assign,assignment]
        return pubsub

    client.pubsub = stubborn_pubsub  # type: ignore[method-assign]
    try:
        invalidation.listen("topic", lambda _key: None)
        await invalidation.wait_connected(5)
        await asyncio.wait_for(invalidation.aclose(), 5)
        assert swallowed == [True]
        assert not invalidation.connected
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
