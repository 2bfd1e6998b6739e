"""Explicit registration of every job's dramatiq actor (names and queues from `infrahaus_domain.jobs`).

Each actor is a thin async wrapper: it fetches the process's worker context and awaits the
implementation, which tests await directly with a test context. Failures of the work itself are
recorded on the operation and never raised, so dramatiq retries only what escapes: database or
Redis outages, after which a redelivered message resumes the same operation.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq

from infrahaus_domain import jobs
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import (
    create_snapshot,
    delete_container,
    delete_snapshot,
    refresh_services,
    restart_container,
    rollback_snapshot,
    shutdown_container,
    start_container,
    stop_container,
)
from infrahaus_worker.actors.operation_run import OperationBusyError
from infrahaus_worker.actors.sync import sync_container
from infrahaus_worker.actors.vmids import reconcile_operations, refresh_vmids
from infrahaus_worker.batches import release_after
from infrahaus_worker.context import WorkerContext, current_context

# Backstop time limits (ms) above the actors' own asyncio timeouts, which record a `timeout` failure.
CREATE_TIME_LIMIT_MS = (2 * 3600 + 300) * 1000
LIFECYCLE_TIME_LIMIT_MS = (10 * 60 + 60) * 1000
MAINTENANCE_TIME_LIMIT_MS = 5 * 60 * 1000

OperationImpl = Callable[[WorkerContext, str], Awaitable[None]]

OPERATION_ACTORS: dict[jobs.Job, OperationImpl] = {
    jobs.CONTAINER_CREATE: create_container,
    jobs.CONTAINER_START: start_container,
    jobs.CONTAINER_STOP: stop_container,
    jobs.CONTAINER_SHUTDOWN: shutdown_container,
    jobs.CONTAINER_RESTART: restart_container,
    jobs.CONTAINER_DELETE: delete_container,
    jobs.CONTAINER_SERVICES_REFRESH: refresh_services,
    jobs.CONTAINER_SYNC: sync_container,
    jobs.CONTAINER_SNAPSHOT_CREATE: create_snapshot,
    jobs.CONTAINER_SNAPSHOT_ROLLBACK: rollback_snapshot,
    jobs.CONTAINER_SNAPSHOT_DELETE: delete_snapshot,
}


def _operation_actor(impl: OperationImpl, name: str) -> Callable[..., Awaitable[None]]:
    async def actor(operation_id: str) -> None:
        context = current_context()
        try:
            await impl(context, operation_id)
        except OperationBusyError:
            # Look again once the other delivery had time to finish or to be declared dead.
            raise dramatiq.Retry(delay=int(max(3.0, 3 * context.timings.heartbeat_interval) * 1000)) from None
        # Whatever way the operation ended, its batch (if any) may now start the next one of its operations.
        await release_after(context, operation_id)

    actor.__name__ = actor.__qualname__ = name.replace(".", "_")
    return actor


async def _refresh_vmids(node_id: str) -> None:
    await refresh_vmids(current_context(), node_id)


async def _reconcile() -> None:
    await reconcile_operations(current_context())


def register_actors(broker: dramatiq.Broker) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Declare every job's actor on `broker`; returns them by job name."""
    declared: dict[str, dramatiq.Actor[Any, Any]] = {}
    for job, impl in OPERATION_ACTORS.items():
        long_running = job in (jobs.CONTAINER_CREATE, jobs.CONTAINER_SYNC)
        limit = CREATE_TIME_LIMIT_MS if long_running else LIFECYCLE_TIME_LIMIT_MS
        declared[job.name] = dramatiq.actor(
            actor_name=job.name,
            queue_name=job.queue,
            broker=broker,
            # Only infrastructure failures escape an operation actor; a few quick retries ride them out,
            # and a redelivered message resumes the same operation.
            max_retries=5,
            min_backoff=1_000,
            max_backoff=30_000,
            time_limit=limit,
        )(_operation_actor(impl, job.name))
    declared[jobs.NODE_VMIDS_REFRESH.name] = dramatiq.actor(
        actor_name=jobs.NODE_VMIDS_REFRESH.name,
        queue_name=jobs.NODE_VMIDS_REFRESH.queue,
        broker=broker,
        max_retries=2,
        min_backoff=2_000,
        time_limit=MAINTENANCE_TIME_LIMIT_MS,
    )(_refresh_vmids)
    declared[jobs.OPERATIONS_RECONCILE.name] = dramatiq.actor(
        actor_name=jobs.OPERATIONS_RECONCILE.name,
        queue_name=jobs.OPERATIONS_RECONCILE.queue,
        broker=broker,
        # The next periodic pass does the same work; retrying a stale pass adds nothing.
        max_retries=0,
        time_limit=MAINTENANCE_TIME_LIMIT_MS,
    )(_reconcile)
    return declared
