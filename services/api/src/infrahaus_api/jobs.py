"""The API's side of the job queue: dramatiq messages sent by actor name, never importing the worker.

Production sends through a Redis broker in the worker's namespace; the embedded mode passes the StubBroker its
in-process worker threads consume (`create_app(settings, broker=...)`), and tests pass a StubBroker to look at.
"""

import asyncio

import dramatiq
import msgspec
from dramatiq.brokers.redis import RedisBroker

from infrahaus_domain.jobs import ALL_JOBS, Job, broker_namespace
from infrahaus_domain.settings import Settings


class DramatiqJobQueue:
    """`JobQueue` over a dramatiq broker. Sending is blocking I/O for Redis, so it runs in a thread."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker
        # StubBroker refuses unknown queues; declaring is idempotent on every broker.
        for queue in sorted({job.queue for job in ALL_JOBS}):
            broker.declare_queue(queue)

    async def enqueue(self, job: Job, payload: msgspec.Struct) -> None:
        """Send one message for `job` with the payload's fields as keyword arguments."""
        message: dramatiq.Message[object] = dramatiq.Message(
            queue_name=job.queue,
            actor_name=job.name,
            args=(),
            kwargs=msgspec.to_builtins(payload),
            options={},
        )
        await asyncio.to_thread(self.broker.enqueue, message)


def build_broker(settings: Settings) -> dramatiq.Broker | None:
    """The Redis broker the API sends to, or None without Redis (the embedded mode then injects its StubBroker)."""
    if settings.redis.url is None:
        return None
    # No middleware: the API only sends; the worker's middleware acts on messages when they are processed.
    return RedisBroker(url=settings.redis.url, namespace=broker_namespace(settings.redis.prefix), middleware=[])  # type: ignore[no-untyped-call]
