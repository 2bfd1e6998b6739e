"""`LocalCache`: values kept in this process's memory for a short time, dropped in every process together.

A hot read (a session, a bearer token) then costs no network round trip. Whoever changes the underlying truth
calls `ports.invalidation.publish(topic, key)` **after** the change committed: this process drops the key at once,
every other process when the pub/sub message reaches it (`Invalidation`, in `infrahaus_domain.ports`).

The bound: a value is never served later than `ttl` after it was read, whatever happens to the messages. While
the process's subscription is down nothing is served from memory nor kept, and the port drops every cached value
when the subscription comes back, so a message missed in between cannot leave a stale entry; only a subscription
that looks alive while messages are lost falls back to `ttl`.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

if TYPE_CHECKING:
    from infrahaus_domain.ports import Invalidation

V = TypeVar("V")


class Stamp(NamedTuple):
    """Taken before reading the truth a value is cached from: when it was read, and which invalidations had
    happened by then."""

    generation: int
    at: float


class LocalCache(Generic[V]):
    """Values of one invalidation topic in this process, each for at most `ttl` seconds, at most `max_entries`
    (oldest out). Thread-safe: in the embedded mode the worker's thread may invalidate while the API reads."""

    def __init__(
        self,
        invalidation: "Invalidation",
        topic: str,
        *,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        cleared_by: tuple[str, ...] = (),
    ) -> None:
        self._invalidation = invalidation
        self.topic = topic
        # Topics whose every invalidation drops all of this cache (e.g. an account disabled: its sessions).
        self._cleared_by = cleared_by
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._guard = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        # Counts invalidations: a value read before one of them must not be stored after it.
        self._generation = 0
        self._listening = False

    def _usable(self) -> bool:
        if not self._listening:
            # Registered on first use, from the process's event loop (the Redis adapter subscribes there).
            self._listening = True
            self._invalidation.listen(self.topic, self._invalidated)
            for topic in self._cleared_by:
                self._invalidation.listen(topic, self._cleared)
        return self._invalidation.connected

    def get(self, key: str) -> V | None:
        """The cached value, or None when absent, older than `ttl`, or while invalidations cannot reach us."""
        if not self._usable():
            return None
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() - entry[0] >= self.ttl:
                del self._entries[key]
                return None
            return entry[1]

    def stamp(self) -> Stamp:
        """Take this before reading the value from where it lives, and pass it to `put`."""
        self._usable()
        with self._guard:
            return Stamp(self._generation, self._clock())

    def put(self, key: str, value: V, stamp: Stamp) -> None:
        """Keep `value` read after `stamp` was taken; the `ttl` counts from then. Nothing is kept when an
        invalidation of this topic arrived in between (the value may predate it), or while none can arrive."""
        if not self._usable():
            return
        with self._guard:
            if stamp.generation != self._generation:
                return
            self._entries[key] = (stamp.at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def _invalidated(self, key: str | None) -> None:
        with self._guard:
            self._generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def _cleared(self, _key: str | None) -> None:
        self._invalidated(None)
