"""Worker threads inside the API process, for the embedded default (`infrahaus dev`).

The StubBroker keeps messages in memory; a dramatiq `Worker` consumes them on threads of this
process with the same middleware as production (time limits, retries, the AsyncIO loop, the
worker context). The caller passes the in-memory stores its API uses, so progress published by
the worker reaches the API's SSE listeners.
"""

import dramatiq
from dramatiq.brokers.stub import StubBroker

from infrahaus_domain.settings import Settings, WorkerTimings
from infrahaus_worker.actors import register_actors
from infrahaus_worker.background import run_background
from infrahaus_worker.context import SharedStores, WorkerContextMiddleware
from infrahaus_worker.observability import ActorLogContext


class InprocessWorker:
    """Handle of the running in-process worker."""

    def __init__(self, worker: dramatiq.Worker, broker: StubBroker) -> None:
        self.worker = worker
        self.broker = broker

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking messages and wait (up to `timeout` s) for running ones to reach a terminal state.

        Each in-flight operation finishes normally; what still waits in the queue stays `queued` and is
        sent again by the reconciler at the next start.
        """
        self.worker.stop(timeout=int(timeout * 1000))


def start_inprocess_worker(
    settings: Settings,
    broker: StubBroker,
    *,
    shared: SharedStores | None = None,
    timings: WorkerTimings | None = None,
    threads: int | None = None,
    reconcile: bool = True,
) -> InprocessWorker:
    """Declare the actors on `broker` (a StubBroker from `build_stub_broker`) and start consuming.

    `shared` must hold the API's own in-memory ports and log store in the embedded mode.
    """
    broker.add_middleware(
        WorkerContextMiddleware(
            settings, timings=timings, shared=shared, background=run_background if reconcile else None
        )
    )
    broker.add_middleware(ActorLogContext())
    if not broker.actors:
        register_actors(broker)
    worker = dramatiq.Worker(broker, worker_threads=threads or settings.worker.concurrency, worker_timeout=100)
    worker.start()
    return InprocessWorker(worker, broker)
