"""The reconciler: nothing stays `queued` or `running` forever.

- A `queued` operation older than `requeue_after` whose message never ran is sent again (the API
  commits the operation before sending; a crash or a broker outage in between loses the message).
- A `running` operation whose heartbeat is older than `heartbeat_stale` lost its worker: it fails
  with code `worker_lost` and the container of a create or delete goes to `error`.
A redelivered message of a failed operation then finds it terminal and does nothing.
"""

import asyncio
import logging
from datetime import timedelta

import msgspec

from infrahaus_domain.jobs import job_for_operation
from infrahaus_worker.actors.runs import unit
from infrahaus_worker.context import WorkerContext

log = logging.getLogger("infrahaus.worker.reconciler")


class ReconcileReport(msgspec.Struct, kw_only=True):
    requeued: list[str]
    failed: list[str]


async def reconcile(ctx: WorkerContext) -> ReconcileReport:
    """One pass; safe to run from several processes at once (rows are locked, terminal ones skipped)."""
    async with unit(ctx) as u:
        lost = await u.operations.requeue_lost(queued_longer_than=timedelta(seconds=ctx.limits.requeue_after))
        resend = [(op.id, op.kind) for op in lost]
    for op_id, kind in resend:
        job, payload = job_for_operation(kind, op_id)
        await ctx.jobs.enqueue(job, payload)
        log.warning("re-sent lost message of operation %s (%s)", op_id, kind)
    async with unit(ctx) as u:
        failed = await u.operations.fail_stale(heartbeat_older_than=timedelta(seconds=ctx.limits.heartbeat_stale))
        failed_ids = [str(op.id) for op in failed]
    for failed_id in failed_ids:
        log.warning("operation %s lost its worker; failed with worker_lost", failed_id)
    return ReconcileReport(requeued=[str(op_id) for op_id, _ in resend], failed=failed_ids)


async def reconcile_forever(ctx: WorkerContext) -> None:
    """Run `reconcile` every `reconcile_interval` seconds until cancelled; a failing pass is logged and retried."""
    while True:
        try:
            await reconcile(ctx)
        except Exception:
            log.exception("reconciliation pass failed")
        await asyncio.sleep(ctx.limits.reconcile_interval)
