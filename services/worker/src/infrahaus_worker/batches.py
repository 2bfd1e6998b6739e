"""A batch's next operations: released when one of its operations ends (see `infrahaus_domain.batches.service`).

The release commits first and the jobs are sent after it; a send lost in between is re-sent by the reconciler like
any queued operation's, and a worker that died before releasing is made up for by the reconciler's own release pass.
"""

import logging
from uuid import UUID

from infrahaus_domain.jobs import job_for_operation
from infrahaus_worker.context import WorkerContext

log = logging.getLogger("infrahaus.worker.batches")


async def release_after(ctx: WorkerContext, operation_id: str) -> list[str]:
    """After an operation ran: when it ended and belongs to a batch, release the batch's next operations and send
    their jobs. Returns the released operations' ids."""
    async with ctx.unit() as u:
        batch_id = await u.batches.batch_of(UUID(operation_id))
    if batch_id is None:
        return []
    return await release(ctx, batch_id)


async def release(ctx: WorkerContext, batch_id: UUID) -> list[str]:
    """Release what the batch's free slots allow, then send the released operations' jobs."""
    async with ctx.unit() as u:
        released = [(op.id, op.kind) for op in await u.batches.release(batch_id)]
    for op_id, kind in released:
        job, payload = job_for_operation(kind, op_id)
        try:
            await ctx.jobs.enqueue(job, payload)
        except Exception:
            log.warning("sending the job of released operation %s failed; the reconciler re-sends it", op_id)
    return [str(op_id) for op_id, _ in released]


async def release_held(ctx: WorkerContext) -> list[str]:
    """The reconciler's pass: every batch that still holds operations back releases what its slots allow."""
    async with ctx.unit() as u:
        batch_ids = await u.batches.with_held()
    released: list[str] = []
    for batch_id in batch_ids:
        released.extend(await release(ctx, batch_id))
    return released
