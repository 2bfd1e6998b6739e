"""The reconciler: nothing stays `queued` or `running` forever.

- A `queued` operation older than `requeue_after` whose message never ran is sent again (the API
  commits the operation before sending; a crash or a broker outage in between loses the message).
- A `running` operation whose heartbeat is older than `heartbeat_stale` lost its worker (SIGKILL, OOM, a machine
  gone): it is handed to another worker, which resumes it from its resume markers exactly like a message a
  draining worker handed back. After `max_attempts` claims it fails with code `worker_lost` instead (the container
  of a create or delete goes to `error`).
A redelivered message of a finished operation finds it terminal and does nothing; one of an operation that another
worker already resumed backs off while that worker's heartbeat is fresh.
- A batch still holding operations back releases what its `max_parallel` allows (normally the worker that finished
  one of its operations did; this catches a worker that died in between).
"""

import asyncio
import logging
from datetime import timedelta
from uuid import UUID

import msgspec

from infrahaus_domain.jobs import job_for_operation
from infrahaus_worker.batches import release_held
from infrahaus_worker.context import WorkerContext

log = logging.getLogger("infrahaus.worker.reconciler")


class ReconcileReport(msgspec.Struct, kw_only=True):
    requeued: list[str]
    resumed: list[str]
    failed: list[str]
    # Held operations of batches released by this pass (their worker ended without releasing them).
    released: list[str] = msgspec.field(default_factory=list)


async def reconcile(ctx: WorkerContext) -> ReconcileReport:
    """One pass; safe to run from several processes at once (rows are locked, terminal ones skipped)."""
    async with ctx.unit() as u:
        lost = await u.operations.requeue_lost(queued_longer_than=timedelta(seconds=ctx.timings.requeue_after))
        resend = [(op.id, op.kind) for op in lost]
    for op_id, kind in resend:
        if await _send(ctx, op_id, kind):
            log.warning("re-sent lost message of operation %s (%s)", op_id, kind)
    async with ctx.unit() as u:
        resumed, failed = await u.operations.resume_stale(
            heartbeat_older_than=timedelta(seconds=ctx.timings.heartbeat_stale),
            max_attempts=ctx.settings.worker.max_attempts,
        )
        handed_over = [(op.id, op.kind) for op in resumed]
        failed_ids = [str(op.id) for op in failed]
    for op_id, kind in handed_over:
        if await _send(ctx, op_id, kind):
            log.warning("operation %s (%s) lost its worker; handed to another worker to resume", op_id, kind)
    for failed_id in failed_ids:
        log.warning("operation %s lost its worker too often; failed with worker_lost", failed_id)
    released = await release_held(ctx)
    if released:
        log.warning("released %d held operation(s) of batches whose worker did not", len(released))
    return ReconcileReport(
        requeued=[str(op_id) for op_id, _ in resend],
        resumed=[str(op_id) for op_id, _ in handed_over],
        failed=failed_ids,
        released=released,
    )


async def _send(ctx: WorkerContext, op_id: UUID, kind: str) -> bool:
    """Send the operation's job; a failed send (the broker is down) is retried by a later pass, which finds the
    operation again once the threshold passed."""
    job, payload = job_for_operation(kind, op_id)
    try:
        await ctx.jobs.enqueue(job, payload)
    except Exception:
        log.warning("sending the job of operation %s failed; a later pass sends it again", op_id)
        return False
    return True


async def reconcile_forever(ctx: WorkerContext) -> None:
    """Run `reconcile` every `reconcile_interval` seconds until cancelled; a failing pass is logged and retried."""
    while True:
        try:
            await reconcile(ctx)
        except Exception:
            log.exception("reconciliation pass failed")
        await asyncio.sleep(ctx.timings.reconcile_interval)
