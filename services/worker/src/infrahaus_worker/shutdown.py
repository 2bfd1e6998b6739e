"""Graceful shutdown of a worker process: drain within a bound, hand back what cannot finish.

On SIGTERM dramatiq stops fetching, requeues prefetched messages and waits for the running ones. This middleware
bounds that wait: messages still running `drain_timeout` seconds after shutdown began are interrupted. The
interrupt cancels the actor's coroutine between two awaits, so no terminal state is written (the operation stays
`running`, its resume markers intact), and dramatiq's Retries middleware sends the message again with a short
delay; the next worker to receive it takes the operation over once its heartbeat went quiet and resumes it.
"""

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.middleware.threading import Interrupt, raise_thread_exception

from infrahaus_domain.settings import WorkerSettings, variable

log = logging.getLogger("infrahaus.worker.shutdown")

# Passed by `infrahaus worker --drain-timeout` to its dramatiq processes.
DRAIN_TIMEOUT_ENV = variable(WorkerSettings, "drain_timeout")
DEFAULT_DRAIN_TIMEOUT = WorkerSettings().drain_timeout


class HandedBack(Interrupt):
    """Raised in an actor's thread when the worker shuts down before the actor finished."""


class DrainOnShutdown(Middleware):
    """Interrupt (and so requeue) the messages still running `drain_timeout` seconds into a shutdown."""

    def __init__(self, drain_timeout: float) -> None:
        self.drain_timeout = drain_timeout
        self._lock = threading.Lock()
        self._running: dict[int, MessageProxy] = {}
        self._timer: threading.Timer | None = None

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        with self._lock:
            self._running[threading.get_ident()] = message

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._running.pop(threading.get_ident(), None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with self._lock:
            running = len(self._running)
        log.info("shutting down: %d message(s) in flight get %.0f s to finish", running, self.drain_timeout)
        self._timer = threading.Timer(self.drain_timeout, self.hand_back)
        self._timer.daemon = True
        self._timer.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def hand_back(self) -> None:
        """Interrupt every message still running; each goes back to the broker through Retries."""
        with self._lock:
            running = dict(self._running)
        for thread_id, message in running.items():
            log.warning(
                "handing back message %s (%s): it did not finish within the drain timeout",
                message.message_id,
                message.actor_name,
                extra={"operation_id": message.kwargs.get("operation_id"), "actor": message.actor_name},
            )
            raise_thread_exception(thread_id, HandedBack)  # type: ignore[no-untyped-call]
