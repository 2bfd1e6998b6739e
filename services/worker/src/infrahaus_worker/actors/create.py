"""The `container.create` actor: run the creation pipeline for one operation."""

import logging

from infrahaus_domain.containers.errors import OperationCancelledError
from infrahaus_domain.containers.schemas import ContainerSpec
from infrahaus_worker.actors.operation_run import (
    Claimed,
    ClaimLost,
    DomainReporter,
    claim,
    fail,
    heartbeat,
    succeed,
)
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import classify
from infrahaus_worker.pipeline.run import run_creation
from infrahaus_worker.safety import RolledBack

log = logging.getLogger("infrahaus.worker")


async def create_container(ctx: WorkerContext, operation_id: str) -> None:
    """Create and provision the operation's container; a finished or unknown operation is left alone."""
    claimed = await claim(ctx, operation_id)
    if claimed is None or claimed.spec is None:
        return
    await _run(ctx, claimed, claimed.spec)


async def _run(ctx: WorkerContext, claimed: Claimed, spec: ContainerSpec) -> None:
    reporter = DomainReporter(ctx, claimed)
    try:
        async with (
            heartbeat(ctx, claimed),
            ctx.access.client(claimed.endpoint) as client,
        ):
            runner = ctx.access.runner(claimed.endpoint)
            try:
                env = PipelineEnv(
                    operation_id=str(claimed.operation_id),
                    attempt=claimed.attempts,
                    node=claimed.pve_node,
                    vmid=claimed.vmid,
                    spec=spec,
                    client=client,
                    runner=runner,
                    reporter=reporter,
                    timings=ctx.timings,
                    token_id=claimed.endpoint.token_id,
                    guest=claimed.guest,
                    root_password=ctx.root_password,
                    keep_snapshots=ctx.settings.day_two.keep_snapshots,
                )
                result = await run_creation(env)
            finally:
                await runner.aclose()
    except ClaimLost:
        return
    except OperationCancelledError:
        log.info("operation %s was cancelled", claimed.operation_id)
        return
    except RolledBack as exc:
        await fail(ctx, claimed, classify(exc.cause, step=reporter.current_step), result=exc.result)
        return
    except Exception as exc:
        await fail(ctx, claimed, classify(exc, step=reporter.current_step))
        return
    await succeed(ctx, claimed, result)
