"""The dramatiq broker: Redis in production, the stub broker for the embedded default.

The middleware list is ordered on purpose. ``before_*`` hooks run top to bottom and ``after_*``
hooks bottom to top, so everything that needs the event loop is listed after ``AsyncIO``: it boots
after the loop exists and shuts down before the loop stops.
"""

from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AsyncIO,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

# A dead worker's unacknowledged messages come back only after its heartbeat expired AND some
# live consumer ran a maintenance pass. dramatiq's defaults (60 s, 0.1 % of fetches) left a killed
# worker's creation waiting for many minutes; 20 s and every fetch bring it back within ~half a minute.
HEARTBEAT_TIMEOUT_MS = 20_000
MAINTENANCE_CHANCE = 1_000_000  # per million fetches: every fetch runs a (cheap) maintenance pass

# Retries are set per actor; this only backs up an actor that forgot to say. Transient failures
# come back quickly, domain errors are declared in each actor's `throws` and never retried.
DEFAULT_MAX_RETRIES = 3
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 60_000


def build_middleware(extra: Sequence[Middleware] = ()) -> list[Middleware]:
    """The ordered middleware list shared by both brokers.

    ``extra`` (the worker context middleware) goes last, i.e. after ``AsyncIO``.
    """
    return [
        # Interrupts an actor that overruns its `time_limit`. Actors also bound their own work with
        # asyncio timeouts so they can record a `timeout` failure; this is the backstop.
        TimeLimit(),
        # Interrupts running actors on SIGTERM only when an actor opts in; ours finish their step
        # and leave the rest to redelivery, so the default (no interruption) stays.
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=DEFAULT_MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
        # Gives actors access to the message being processed (its id and retry count for logs).
        CurrentMessage(),
        # One event loop thread per worker process runs every async actor of that process.
        AsyncIO(),
        *extra,
    ]


def build_redis_broker(
    url: str, *, namespace: str, extra: Sequence[Middleware] = (), heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS
) -> RedisBroker:
    """A Redis broker whose keys live under ``namespace`` (derived from the Redis key prefix)."""
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=url,
        namespace=namespace,
        middleware=build_middleware(extra),
        heartbeat_timeout=heartbeat_timeout_ms,
        maintenance_chance=MAINTENANCE_CHANCE,
    )


def build_stub_broker(extra: Sequence[Middleware] = ()) -> StubBroker:
    """The in-memory broker for the embedded default; paired with in-process worker threads."""
    broker = StubBroker(middleware=build_middleware(extra))
    # An in-process Worker never emits process_boot; without it TimeLimit and ShutdownNotifications
    # never start their watcher and time limits are silently ignored.
    broker.emit_after("process_boot")
    return broker


def install(broker: dramatiq.Broker) -> dramatiq.Broker:
    """Make ``broker`` the global one; must happen before any actor is declared."""
    dramatiq.set_broker(broker)
    return broker
