"""Lifecycle actors: start, stop, shutdown, restart, delete and services refresh of one container."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from infrahaus_domain.containers.errors import OperationCancelledError
from infrahaus_domain.day_two.schemas import ON_START_STEPS, SyncRequest
from infrahaus_domain.errors import DomainError
from infrahaus_domain.jobs import job_for_operation
from infrahaus_domain.models.containers import Container
from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxNotFound, ProxmoxTaskFailed
from infrahaus_worker import lifecycle, ownership
from infrahaus_worker.actors.operation_run import (
    Claimed,
    ClaimLost,
    DomainReporter,
    claim,
    fail,
    guest_changed,
    heartbeat,
    succeed,
)
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.pipeline import discover
from infrahaus_worker.pipeline.env import PipelineEnv, run_task
from infrahaus_worker.pipeline.failures import StepError, classify
from infrahaus_worker.pipeline.prepare import resolve_ip

log = logging.getLogger("infrahaus.worker")

Action = Callable[[ProxmoxClient, Claimed, WorkerContext], Awaitable[dict[str, Any]]]

STEP_MESSAGES = {
    "start": "Starting container",
    "stop": "Stopping container",
    "shutdown": "Shutting down container",
    "restart": "Restarting container",
    "delete": "Deleting container",
    "services_refresh": "Refreshing services",
    "snapshot_create": "Taking a snapshot",
    "snapshot_rollback": "Rolling back to a snapshot",
    "snapshot_delete": "Deleting a snapshot",
}


async def _run(ctx: WorkerContext, operation_id: str, kind: str, action: Action, *, guarded: bool = True) -> None:
    """Claim, check ownership (`guarded`: every action except delete, which judges the guest itself), act, finish."""
    claimed = await claim(ctx, operation_id)
    if claimed is None:
        return
    if claimed.kind != kind:
        log.error("operation %s is a %s, not a %s; ignored", operation_id, claimed.kind, kind)
        return
    reporter = DomainReporter(ctx, claimed)
    try:
        await reporter.step(kind, 10, STEP_MESSAGES[kind])
        async with (
            asyncio.timeout(ctx.timings.lifecycle),
            heartbeat(ctx, claimed),
            ctx.access.client(claimed.endpoint) as client,
        ):
            if guarded:
                # Nothing on the node is changed unless the guest carries this container's marker.
                await ownership.require_owned(
                    client, claimed.guest, reporter, lock_wait=ctx.timings.lock_wait, step=kind
                )
            result = await action(client, claimed, ctx)
    except ClaimLost:
        return
    except OperationCancelledError:
        return
    except Exception as exc:
        await fail(ctx, claimed, classify(exc, step=kind))
        return
    if kind == "delete":
        # Removing the record and finishing the operation commit together: were they separate, a database failure
        # in between would leave a finished-looking delete whose redelivery finds no container and fails not_found.
        # The `deleted` event is written while the row still exists (it records the container's user and node).
        async with ctx.unit() as u:
            await u.operations.succeed(claimed.operation_id, result, attempt=claimed.attempts)
            await u.containers.remove(claimed.container_id)
        await guest_changed(ctx, claimed)
        return
    await succeed(ctx, claimed, result)
    if kind == "start":
        await sync_after_start(ctx, claimed)


async def sync_after_start(ctx: WorkerContext, claimed: Claimed) -> None:
    """A container with `sync_on_start` gets a sync (config, files, packages; no scripts) after a start made through
    infrahaus, as an operation of its own. Queued here, sent after the commit; a lost message is re-sent by the
    reconciler."""
    async with ctx.unit() as u:
        container = await u.session.get(Container, claimed.container_id)
        if container is None or not container.sync_on_start:
            return
        try:
            op = await u.day_two.request_sync(
                container.id,
                container.user_id,
                SyncRequest(steps=list(ON_START_STEPS)),
                reason="on_start",
                check_status=False,
            )
        except DomainError as exc:
            await u.events.record(
                container.id, "step", f"No sync after the start: {exc.detail}", {"step": "sync", "code": exc.code}
            )
            return
    job, payload = job_for_operation(op.kind, op.id)
    try:
        await ctx.jobs.enqueue(job, payload)
    except Exception:  # the reconciler re-sends a queued operation whose message never left
        log.warning("sync after the start of %s queued; its message will be re-sent", claimed.container_id)


async def _start(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    return await lifecycle.start(client, c.pve_node, c.vmid, ctx.timings)


async def _stop(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    return await lifecycle.stop(client, c.pve_node, c.vmid, ctx.timings)


async def _shutdown(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    timeout = c.params.get("timeout")
    return await lifecycle.shutdown(
        client, c.pve_node, c.vmid, ctx.timings, int(timeout) if isinstance(timeout, int) else None
    )


async def _restart(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    return await lifecycle.restart(client, c.pve_node, c.vmid, ctx.timings)


async def _delete(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    """Destroy the guest if it is ours; otherwise (not ours, or already gone) only the record goes:
    `{destroyed: false, reason: "not_owned" | "gone", detail}`."""
    reporter = DomainReporter(ctx, c)
    found = await ownership.inspect(client, c.guest, reporter, lock_wait=ctx.timings.lock_wait)
    if found.verdict == "creating" and found.create_task is not None:
        # Our own create task holds the guest (a delete of a container being created): let it end, then judge again.
        with contextlib.suppress(ProxmoxTaskFailed, ProxmoxNotFound):
            await client.tasks.wait(found.create_task.upid, timeout=ctx.timings.create_task)
        found = await ownership.inspect(client, c.guest, reporter, lock_wait=0)
    if found.verdict in ("gone", "not_ours"):
        reason = "gone" if found.verdict == "gone" else "not_owned"
        await reporter.event(
            "step", f"Guest {c.vmid} not destroyed: {found.detail}", {"step": "delete", "reason": reason}
        )
        return {"destroyed": False, "reason": reason, "detail": found.detail, "vmid": c.vmid}
    if found.verdict == "creating":
        # What our own create task left when it died (only `lock: create`): Proxmox destroys it once unlocked.
        runner = ctx.access.runner(c.endpoint)
        try:
            await runner.unlock(c.vmid)
        finally:
            await runner.aclose()
    result = await lifecycle.destroy(client, c.pve_node, c.vmid, ctx.timings)
    return {**result, "vmid": c.vmid}


async def _services_refresh(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    status = (await client.lxc.status(c.pve_node, c.vmid)).status
    if status != "running":
        raise StepError.of("invalid_state", f"The container is {status}; services are refreshed while it runs.")
    runner = ctx.access.runner(c.endpoint)
    try:
        env = PipelineEnv(
            operation_id=str(c.operation_id),
            attempt=c.attempts,
            node=c.pve_node,
            vmid=c.vmid,
            client=client,
            runner=runner,
            reporter=DomainReporter(ctx, c),
            timings=ctx.timings,
            guest=c.guest,
        )
        env.ip_address = await resolve_ip(env, wait=0)
        services = await discover.discover(env)
    finally:
        await runner.aclose()
    return {"services": [s.name for s in services if not s.is_system], "ip_address": env.ip_address}


async def start_container(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "start", _start)


async def stop_container(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "stop", _stop)


async def shutdown_container(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "shutdown", _shutdown)


async def restart_container(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "restart", _restart)


async def delete_container(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "delete", _delete, guarded=False)


async def refresh_services(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "services_refresh", _services_refresh)


# ---------------------------------------------------------------- snapshots (pve-container API2/LXC/Snapshot.pm)


async def _snapshot_create(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    name = str(c.params["name"])
    if not await client.snapshots.has_feature(c.pve_node, c.vmid):
        raise StepError.of(
            "snapshot_unsupported",
            f"The storage of container {c.vmid} cannot snapshot (Proxmox: snapshot feature is not available).",
            step="snapshot_create",
        )
    description = str(c.params.get("description") or "")
    await run_task(
        client,
        lambda: client.snapshots.create(c.pve_node, c.vmid, name, description=description or None),
        timeout=ctx.timings.snapshot,
        lock_wait=ctx.timings.lock_wait,
    )
    return {"name": name, "description": description}


async def _snapshot_rollback(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    name = str(c.params["name"])
    was_running = (await client.lxc.status(c.pve_node, c.vmid)).status == "running"
    wanted = c.params.get("start")
    start = was_running if wanted is None else bool(wanted)
    await run_task(
        client,
        lambda: client.snapshots.rollback(c.pve_node, c.vmid, name, start=start),
        timeout=ctx.timings.snapshot + ctx.timings.start_stop,
        lock_wait=ctx.timings.lock_wait,
    )
    return {"name": name, "status": "running" if start else "stopped", "started": start}


async def _snapshot_delete(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    name = str(c.params["name"])
    await run_task(
        client,
        lambda: client.snapshots.delete(c.pve_node, c.vmid, name),
        timeout=ctx.timings.snapshot,
        lock_wait=ctx.timings.lock_wait,
    )
    return {"name": name}


async def create_snapshot(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "snapshot_create", _snapshot_create)


async def rollback_snapshot(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "snapshot_rollback", _snapshot_rollback)


async def delete_snapshot(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "snapshot_delete", _snapshot_delete)
