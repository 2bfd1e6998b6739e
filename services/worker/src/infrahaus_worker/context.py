"""Per-process worker resources, built on the worker's event loop before the first message runs.

`WorkerContextMiddleware` is listed after dramatiq's `AsyncIO` middleware: its `before_worker_boot`
runs once the event loop thread exists (resources are built on that loop, since Redis and database
connections belong to one loop), and its `after_worker_shutdown` runs before the loop stops.
Actors reach the context through `current_context()`; tests build one with `WorkerContext.open`.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import msgspec
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware, MiddlewareError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.db import create_engine
from infrahaus_domain.events.logbuffer import LogBuffer, LogStore, build_log_store
from infrahaus_domain.jobs import Job
from infrahaus_domain.nodes.list_cache import node_list_watch, published
from infrahaus_domain.ports import Ports, build_ports
from infrahaus_domain.services import ProcessResources
from infrahaus_domain.settings import Settings, WorkerTimings
from infrahaus_worker.observability import install_operation_metrics

log = logging.getLogger("infrahaus.worker")


class DramatiqJobQueue:
    """`infrahaus_domain.jobs.JobQueue` over a dramatiq broker (used by the reconciler to re-send jobs)."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    async def enqueue(self, job: Job, payload: msgspec.Struct) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=job.queue,
            actor_name=job.name,
            args=(),
            kwargs=msgspec.to_builtins(payload),
            options={},
        )
        # The Redis broker's enqueue is a blocking network call: keep it off the event loop.
        await asyncio.to_thread(self.broker.enqueue, message)


@dataclass(frozen=True, kw_only=True)
class SharedStores:
    """In-memory stores an embedded process shares between its API and its in-process worker."""

    ports: Ports
    log_store: LogStore


@dataclass(kw_only=True)
class WorkerContext(ProcessResources):
    """Everything an actor needs; one per worker process (or per test). `unit()` opens the domain `Services` over
    one short, committed unit of work."""

    timings: WorkerTimings
    engine: AsyncEngine
    jobs: DramatiqJobQueue
    worker_id: str
    owns_ports: bool = True
    # Generates each new container's root password (sent once to Proxmox, never kept). A seam for the
    # tests that prove the password appears nowhere else.
    root_password: Callable[[], str] = lambda: secrets.token_urlsafe(24)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        broker: dramatiq.Broker,
        *,
        timings: WorkerTimings | None = None,
        shared: SharedStores | None = None,
    ) -> "WorkerContext":
        """Build the context on the running loop (the loop its Redis and database connections will use)."""
        install_operation_metrics()
        engine = create_engine(settings.database.url, pool_size=max(2, settings.worker.concurrency))
        ports = shared.ports if shared else build_ports(settings.redis.url, settings.redis.prefix)
        log_store = shared.log_store if shared else build_log_store(settings.redis.url, settings.redis.prefix)
        return cls(
            settings=settings,
            timings=timings or settings.worker.timings,
            engine=engine,
            # Its commits drop the node lists they change in every API process (`infrahaus_domain.nodes.list_cache`).
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False, info=node_list_watch(ports.invalidation)),
            ports=ports,
            logbuffer=LogBuffer(log_store, ports.events),
            box=SecretBox(settings.encryption.keys),
            jobs=DramatiqJobQueue(broker),
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
            owns_ports=shared is None,
        )

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One short unit of work: commits on success so the API and SSE listeners see it at once."""
        async with self.sessionmaker() as session:
            yield session
            await session.commit()
            await published(session)

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run a background task (the reconciler loop) that `aclose` cancels."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.owns_ports:
            await self.ports.close()
        await self.engine.dispose()


_current: WorkerContext | None = None


def current_context() -> WorkerContext:
    """The context of this worker process; set by `WorkerContextMiddleware`."""
    if _current is None:
        raise RuntimeError("the worker context is not initialised (WorkerContextMiddleware missing?)")
    return _current


def set_current_context(context: WorkerContext | None) -> None:
    global _current
    _current = context


class ContextBootError(MiddlewareError):
    """The worker context could not be built (bad settings, database unreachable): the process stops."""


class WorkerContextMiddleware(Middleware):
    """Builds the worker context on the AsyncIO middleware's loop; list it after `AsyncIO`."""

    def __init__(
        self,
        settings: Settings,
        *,
        timings: WorkerTimings | None = None,
        shared: SharedStores | None = None,
        background: Callable[[WorkerContext], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.settings = settings
        self.timings = timings
        self.shared = shared
        # A loop run for the life of the process (the reconciler), started once the context exists.
        self.background = background

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            raise ContextBootError("WorkerContextMiddleware must come after the AsyncIO middleware")
        try:
            context = loop_thread.run_coroutine(self._open(broker))
        except Exception as exc:
            # dramatiq logs and ignores other exceptions of boot hooks; a worker without its context
            # would fail every message, so the process must not start at all.
            raise ContextBootError(f"worker context failed to start: {exc}") from exc
        set_current_context(context)

    async def _open(self, broker: dramatiq.Broker) -> WorkerContext:
        context = await WorkerContext.open(self.settings, broker, timings=self.timings, shared=self.shared)
        if self.background is not None:
            context.spawn(self.background(context))
        return context

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        context = _current
        loop_thread = get_event_loop_thread()
        if context is None or loop_thread is None:
            return
        try:
            loop_thread.run_coroutine(context.aclose())
        finally:
            set_current_context(None)
