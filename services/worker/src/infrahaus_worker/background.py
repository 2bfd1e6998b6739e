"""The loops every worker process runs for its whole life: the reconciler, the webhook deliveries and the
account re-validation."""

import asyncio

from infrahaus_worker.accounts import revalidate_accounts_forever
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.reconciler import reconcile_forever
from infrahaus_worker.webhooks import deliver_forever


async def run_background(ctx: WorkerContext) -> None:
    """The loops until cancelled (each one logs and survives its own failures)."""
    await asyncio.gather(reconcile_forever(ctx), deliver_forever(ctx), revalidate_accounts_forever(ctx))
