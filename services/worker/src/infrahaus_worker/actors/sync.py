"""The `container.sync` actor: bring a container to a revision of its template (`infrahaus_worker.sync`)."""

import asyncio
import logging
from typing import Any
from uuid import UUID

import msgspec

from infrahaus_domain.containers.errors import OperationCancelledError
from infrahaus_domain.containers.spec_builder import spec_for_revision
from infrahaus_domain.day_two.service import applied_spec
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.templates import TemplateRevision
from infrahaus_domain.operations.schemas import OperationError
from infrahaus_domain.templates.revisions import revision_content
from infrahaus_worker.actors.operation_run import (
    Claimed,
    ClaimLost,
    DomainReporter,
    claim,
    fail,
    guest_changed,
    heartbeat,
)
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import classify
from infrahaus_worker.safety import RolledBack
from infrahaus_worker.sync import SyncPlan, applied_after, run_sync, scripts_to_run

log = logging.getLogger("infrahaus.worker")


async def _plan(ctx: WorkerContext, claimed: Claimed) -> tuple[SyncPlan, UUID] | None:
    """The plan from the operation's params and the container's applied spec; None (the operation failed) when the
    revision is gone."""
    params = claimed.params
    async with ctx.unit() as u:
        container = await u.session.get(Container, claimed.container_id)
        revision = await u.session.get(TemplateRevision, UUID(str(params["revision_id"])))
        if container is None or revision is None:
            await u.operations.fail(
                claimed.operation_id,
                OperationError(code="not_found", detail="The template revision to sync to no longer exists."),
                attempt=claimed.attempts,
            )
            return None
        applied = applied_spec(container)
        target = spec_for_revision(applied, revision_content(revision), revision.number)
    plan = SyncPlan(
        revision=revision.number,
        target=target,
        applied=applied,
        steps=list(params.get("steps") or []),
        rerun=list(params.get("scripts") or []),
        snapshot=bool(params.get("snapshot", True)),
        keep_snapshot=ctx.settings.day_two.keep_snapshots,
    )
    return plan, revision.id


async def sync_container(ctx: WorkerContext, operation_id: str) -> None:
    claimed = await claim(ctx, operation_id)
    if claimed is None:
        return
    planned = await _plan(ctx, claimed)
    if planned is None:
        return
    plan, revision_id = planned
    reporter = DomainReporter(ctx, claimed)
    try:
        async with (
            asyncio.timeout(ctx.timings.sync),
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
                    spec=plan.target,
                    client=client,
                    runner=runner,
                    reporter=reporter,
                    timings=ctx.timings,
                    token_id=claimed.endpoint.token_id,
                    guest=claimed.guest,
                    keep_snapshots=plan.keep_snapshot,
                )
                result = await run_sync(env, plan)
            finally:
                await runner.aclose()
    except ClaimLost:
        return
    except OperationCancelledError:
        return
    except RolledBack as exc:
        await fail(ctx, claimed, classify(exc.cause, step=reporter.current_step), result=_with_plan(exc.result, plan))
        return
    except Exception as exc:
        await fail(ctx, claimed, classify(exc, step=reporter.current_step), result=_with_plan({}, plan))
        return
    await _finish(ctx, claimed, plan, revision_id, result)


def _with_plan(result: dict[str, Any], plan: SyncPlan) -> dict[str, Any]:
    return {"revision": plan.revision, "steps": plan.steps, "rolled_back": False, **result}


async def _finish(
    ctx: WorkerContext, claimed: Claimed, plan: SyncPlan, revision_id: UUID, result: dict[str, Any]
) -> None:
    """Record what the container now has applied and finish the operation, in one transaction."""
    applied = applied_after(plan, scripts_to_run(plan))
    async with ctx.unit() as u:
        container = await u.session.get(Container, claimed.container_id)
        if container is not None:
            container.applied_spec = msgspec.to_builtins(applied)
            container.synced_revision_id = revision_id
            await u.session.flush()
        await u.operations.succeed(claimed.operation_id, result, attempt=claimed.attempts)
    await guest_changed(ctx, claimed)
