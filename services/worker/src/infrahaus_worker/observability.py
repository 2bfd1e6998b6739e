"""Worker observability: log context per message, operation metrics, and the metrics endpoint.

- `ActorLogContext` binds `operation_id` and `actor` (the dramatiq actor name) around each message, so every log
  line an actor writes carries them (the ids reach the actor's coroutine: asyncio copies the worker thread's
  context into the task it creates).
- `install_operation_metrics()` counts operations where they reach a terminal state: every transition to
  succeeded/failed/cancelled is an UPDATE of `operations.status` through a session, so a session hook sees all of
  them (the pipeline's succeed/fail, the reconciler's `worker_lost`, cancellations) and records them once the
  transaction commits.
- `serve_metrics()` is the dramatiq `--fork-function` started by `infrahaus worker`: one process serving the
  aggregate of every worker process's samples (prometheus_client multiprocess mode) plus the queue depth, read
  from Redis at scrape time.
"""

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from infrahaus_domain.jobs import ALL_JOBS, broker_namespace
from infrahaus_domain.logs import configure_logging, log_context
from infrahaus_domain.metrics import OPERATION_DURATION, OPERATIONS, QUEUE_DEPTH
from infrahaus_domain.models.containers import TERMINAL_STATUSES, Operation
from infrahaus_domain.settings import Settings, WorkerSettings, variable

log = logging.getLogger("infrahaus.worker")

# Passed by `infrahaus worker` to the metrics process it asks dramatiq to fork.
METRICS_PORT_ENV = variable(WorkerSettings, "metrics_port")
METRICS_HOST_ENV = variable(WorkerSettings, "metrics_host")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_METRICS_PORT = WorkerSettings().metrics_port
_PENDING_KEY = "infrahaus_terminal_operations"


class ActorLogContext(Middleware):
    """Binds `operation_id` (when the message carries one) and `actor` while a message is processed."""

    def __init__(self) -> None:
        self._active: dict[str, tuple[AbstractContextManager[None], float]] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        operation_id = message.kwargs.get("operation_id")
        context = log_context(operation_id=str(operation_id) if operation_id else None, actor=message.actor_name)
        context.__enter__()
        self._active[message.message_id] = (context, time.perf_counter())

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        active = self._active.pop(message.message_id, None)
        if active is None:
            return
        context, started = active
        try:
            # One line per message, inside its context: which actor, which operation, how long, how it ended.
            log.info(
                "%s %s",
                message.actor_name,
                "done" if exception is None else f"raised {type(exception).__name__}",
                extra={"duration_ms": round((time.perf_counter() - started) * 1000, 2)},
            )
        finally:
            context.__exit__(None, None, None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)


def _collect_terminal(session: Session, flush_context: UOWTransaction) -> None:
    pending: list[tuple[str, str, float]] = session.info.setdefault(_PENDING_KEY, [])
    for obj in session.dirty:
        if not isinstance(obj, Operation):
            continue
        history = inspect(obj).attrs.status.history
        if not history.added or history.added[0] not in TERMINAL_STATUSES:
            continue
        if history.deleted and history.deleted[0] in TERMINAL_STATUSES:
            continue
        started = obj.started_at or obj.created_at
        seconds = (obj.finished_at - started).total_seconds() if obj.finished_at and started else 0.0
        pending.append((obj.kind, obj.status, max(0.0, seconds)))


def _record_committed(session: Session) -> None:
    for kind, outcome, seconds in session.info.pop(_PENDING_KEY, []):
        OPERATIONS.labels(kind, outcome).inc()
        OPERATION_DURATION.labels(kind, outcome).observe(seconds)


def _discard(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def install_operation_metrics() -> None:
    """Count operations reaching a terminal state in this process (idempotent; applies to every session)."""
    for name, handler in (
        ("after_flush", _collect_terminal),
        ("after_commit", _record_committed),
        ("after_rollback", _discard),
    ):
        if not event.contains(Session, name, handler):
            event.listen(Session, name, handler)


def prepare_multiprocess_dir(environ: MutableMapping[str, str]) -> str:
    """Point `PROMETHEUS_MULTIPROC_DIR` at an empty directory (a fresh one unless set); returns it.

    Samples of an earlier run left in a configured directory would be added to this run's, so they are removed.
    """
    directory = environ.get(MULTIPROC_ENV)
    if not directory:
        directory = tempfile.mkdtemp(prefix="infrahaus-worker-metrics-")
        environ[MULTIPROC_ENV] = directory
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    return directory


class QueueDepthSampler(Collector):
    """Sets `infrahaus_queue_depth` from the broker's Redis lists when scraped.

    It yields nothing itself: registered before the multiprocess collector, the value it writes is read back
    with every other process's samples. Delayed messages (retries, back-offs) count under `<queue>.DQ`.
    """

    def __init__(self, client: "redis.Redis[bytes]", namespace: str, queues: Iterable[str]) -> None:
        self.client = client
        self.namespace = namespace
        self.queues = sorted({q for queue in queues for q in (queue, f"{queue}.DQ")})

    def collect(self) -> Iterable[Any]:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for queue in self.queues:
                    pipe.llen(f"{self.namespace}:{queue}")
                depths = pipe.execute()
        except redis.RedisError as exc:
            log.warning("queue depth not sampled: %s", type(exc).__name__)
            return []
        for queue, depth in zip(self.queues, depths, strict=True):
            QUEUE_DEPTH.labels(queue).set(int(depth))
        return []


def metrics_registry(settings: Settings) -> CollectorRegistry:
    """The aggregate of every process's samples, with the queue depth sampled first."""
    registry = CollectorRegistry()
    if settings.redis.url is not None:
        client: redis.Redis[bytes] = redis.Redis.from_url(
            settings.redis.url, socket_timeout=2, socket_connect_timeout=2
        )
        registry.register(
            QueueDepthSampler(client, broker_namespace(settings.redis.prefix), (job.queue for job in ALL_JOBS))
        )
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def serve_metrics() -> int:
    """dramatiq fork function: serve `/metrics` until dramatiq stops the group (SIGTERM ends this process)."""
    settings = Settings.from_env(os.environ)
    configure_logging(settings.logging.level, settings.logging.format)
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    try:
        start_http_server(port, addr=host, registry=metrics_registry(settings))
    except OSError as exc:
        # The workers go on without metrics; a liveness probe on the endpoint reports it.
        log.error("worker metrics cannot listen on %s:%d: %s", host, port, exc.strerror or type(exc).__name__)
        return 1
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    while True:
        time.sleep(3600)
