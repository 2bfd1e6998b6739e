"""Every background job, declared once: its actor name, its queue and its payload (ids only, never secrets).

The API enqueues by name through a `JobQueue` (it never imports the worker); the worker registers one dramatiq
actor per `Job` with exactly `job.name` and `job.queue`, and the actor takes the payload's fields as keyword
arguments (`msgspec.to_builtins(payload)`), e.g. `container_create(operation_id="…")`.
"""

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import msgspec


class OperationJob(msgspec.Struct, kw_only=True, frozen=True):
    """Payload of every operation job: the worker loads the operation (and its container) by id."""

    operation_id: str


class NodeJob(msgspec.Struct, kw_only=True, frozen=True):
    """Payload of node-level jobs (VMID cache refresh)."""

    node_id: str


class NoPayload(msgspec.Struct, kw_only=True, frozen=True):
    """Periodic jobs that need no input (the reconciler)."""


@dataclass(frozen=True)
class Job:
    """One kind of background work: dramatiq actor `name` on `queue`, taking a `payload` struct."""

    name: str
    queue: str
    payload: type[msgspec.Struct]


CONTAINER_CREATE = Job("container.create", "containers", OperationJob)
CONTAINER_START = Job("container.start", "lifecycle", OperationJob)
CONTAINER_STOP = Job("container.stop", "lifecycle", OperationJob)
CONTAINER_SHUTDOWN = Job("container.shutdown", "lifecycle", OperationJob)
CONTAINER_RESTART = Job("container.restart", "lifecycle", OperationJob)
CONTAINER_DELETE = Job("container.delete", "lifecycle", OperationJob)
CONTAINER_SERVICES_REFRESH = Job("container.services_refresh", "lifecycle", OperationJob)
CONTAINER_SYNC = Job("container.sync", "containers", OperationJob)
CONTAINER_SNAPSHOT_CREATE = Job("container.snapshot_create", "lifecycle", OperationJob)
CONTAINER_SNAPSHOT_ROLLBACK = Job("container.snapshot_rollback", "lifecycle", OperationJob)
CONTAINER_SNAPSHOT_DELETE = Job("container.snapshot_delete", "lifecycle", OperationJob)
NODE_VMIDS_REFRESH = Job("node.vmids_refresh", "maintenance", NodeJob)
OPERATIONS_RECONCILE = Job("operations.reconcile", "maintenance", NoPayload)

ALL_JOBS: tuple[Job, ...] = (
    CONTAINER_CREATE,
    CONTAINER_START,
    CONTAINER_STOP,
    CONTAINER_SHUTDOWN,
    CONTAINER_RESTART,
    CONTAINER_DELETE,
    CONTAINER_SERVICES_REFRESH,
    CONTAINER_SYNC,
    CONTAINER_SNAPSHOT_CREATE,
    CONTAINER_SNAPSHOT_ROLLBACK,
    CONTAINER_SNAPSHOT_DELETE,
    NODE_VMIDS_REFRESH,
    OPERATIONS_RECONCILE,
)

# Operation.kind -> the job that carries it out. A retry of a failed creation is a new `create` operation.
JOB_FOR_KIND: dict[str, Job] = {
    "create": CONTAINER_CREATE,
    "start": CONTAINER_START,
    "stop": CONTAINER_STOP,
    "shutdown": CONTAINER_SHUTDOWN,
    "restart": CONTAINER_RESTART,
    "delete": CONTAINER_DELETE,
    "services_refresh": CONTAINER_SERVICES_REFRESH,
    "sync": CONTAINER_SYNC,
    "snapshot_create": CONTAINER_SNAPSHOT_CREATE,
    "snapshot_rollback": CONTAINER_SNAPSHOT_ROLLBACK,
    "snapshot_delete": CONTAINER_SNAPSHOT_DELETE,
}


def broker_namespace(redis_prefix: str) -> str:
    """The dramatiq Redis namespace for a key prefix (`"infrahaus:"` -> `"infrahaus:dramatiq"`): API and worker
    must agree on it, or messages go to queues nobody reads."""
    return f"{redis_prefix}dramatiq" if redis_prefix else "dramatiq"


class JobQueue(Protocol):
    """Sends a job message. Implemented with dramatiq in the API (by name) and in the worker (reconciler)."""

    async def enqueue(self, job: Job, payload: msgspec.Struct) -> None:
        """Send one message for `job`; raises on a broker failure (callers decide whether that is fatal)."""
        ...


def job_for_operation(kind: str, operation_id: UUID) -> tuple[Job, OperationJob]:
    """The job and payload that carry out an operation of `kind`."""
    return JOB_FOR_KIND[kind], OperationJob(operation_id=str(operation_id))
