"""`LocalCache`: expiry, invalidation races, and serving only while invalidations can arrive."""

from infrahaus_domain.ports.local_cache import LocalCache
from infrahaus_domain.ports.memory import MemoryInvalidation


class Link(MemoryInvalidation):
    """The memory adapter with a switch for `connected`."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_value_lives_ttl_seconds_from_when_it_was_read() -> None:
    clock = Clock()
    cache: LocalCache[str] = LocalCache(Link(), "t", ttl=10, clock=clock)
    stamp = cache.stamp()
    clock.now += 4  # the read took a while: the value is as old as the stamp
    cache.put("k", "v", stamp)
    clock.now += 5.9
    assert cache.get("k") == "v"
    clock.now += 0.1
    assert cache.get("k") is None


async def test_a_value_read_before_an_invalidation_is_not_kept() -> None:
    link = Link()
    cache: LocalCache[str] = LocalCache(link, "t", ttl=10)
    stamp = cache.stamp()
    await link.publish("t", "other")  # any invalidation of the topic between the read and the put
    cache.put("k", "stale", stamp)
    assert cache.get("k") is None
    cache.put("k", "fresh", cache.stamp())
    assert cache.get("k") == "fresh"


def test_nothing_is_served_or_kept_while_invalidations_cannot_arrive() -> None:
    link = Link()
    cache: LocalCache[str] = LocalCache(link, "t", ttl=10)
    cache.put("k", "v", cache.stamp())
    link.up = False
    assert cache.get("k") is None
    cache.put("j", "v", cache.stamp())
    link.up = True
    assert cache.get("j") is None


def test_oldest_entries_leave_first() -> None:
    cache: LocalCache[int] = LocalCache(Link(), "t", ttl=10, max_entries=2)
    for n in range(3):
        cache.put(str(n), n, cache.stamp())
    assert [cache.get(str(n)) for n in range(3)] == [None, 1, 2]


async def test_publishing_drops_the_key_from_every_cache_of_its_topic_only() -> None:
    link = Link()
    first: LocalCache[str] = LocalCache(link, "sessions", ttl=10)
    second: LocalCache[str] = LocalCache(link, "sessions", ttl=10)
    tokens: LocalCache[str] = LocalCache(link, "tokens", ttl=10)
    for cache in (first, second, tokens):
        cache.put("k", "v", cache.stamp())
        cache.put("j", "v", cache.stamp())
    await link.publish("sessions", "k")
    assert (first.get("k"), second.get("k"), tokens.get("k")) == (None, None, "v")
    assert first.get("j") == "v"
    link.handlers.call_all()  # a lost subscription came back: everything may be stale
    assert (first.get("j"), tokens.get("j")) == (None, None)
