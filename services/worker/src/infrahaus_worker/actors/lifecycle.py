"""Lifecycle actors: start, stop, shutdown, restart, delete and services refresh of one container."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from infrahaus_domain.containers.errors import OperationCancelledError
from infrahaus_domain.nodes.connection import pct_runner, proxmox_client
from infrahaus_proxmox import ProxmoxClient
from infrahaus_worker import lifecycle
from infrahaus_worker.actors.runs import Claimed, DomainReporter, claim, fail, heartbeat, succeed, unit
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.pipeline import discover
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError, classify
from infrahaus_worker.pipeline.plan import CreationPlan
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
}


async def _run(ctx: WorkerContext, operation_id: str, kind: str, action: Action) -> None:
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
            asyncio.timeout(ctx.limits.lifecycle),
            heartbeat(ctx, claimed.operation_id),
            proxmox_client(claimed.endpoint) as client,
        ):
            result = await action(client, claimed, ctx)
    except OperationCancelledError:
        return
    except Exception as exc:
        await fail(ctx, claimed.operation_id, classify(exc, step=kind))
        return
    if kind == "delete":
        # Removing the record and finishing the operation commit together: were they separate, a database failure
        # in between would leave a finished-looking delete whose redelivery finds no container and fails not_found.
        async with unit(ctx) as u:
            await u.vmids.invalidate(claimed.node_id)
            await u.containers.remove(claimed.container_id)
            await u.operations.succeed(claimed.operation_id, result)
        return
    await succeed(ctx, claimed.operation_id, result)


async def _start(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    return await lifecycle.start(client, c.pve_node, c.vmid, ctx.limits)


async def _stop(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    return await lifecycle.stop(client, c.pve_node, c.vmid, ctx.limits)


async def _shutdown(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    timeout = c.params.get("timeout")
    return await lifecycle.shutdown(
        client, c.pve_node, c.vmid, ctx.limits, int(timeout) if isinstance(timeout, int) else None
    )


async def _restart(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    return await lifecycle.restart(client, c.pve_node, c.vmid, ctx.limits)


async def _delete(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    result = await lifecycle.destroy(client, c.pve_node, c.vmid, ctx.limits)
    return {**result, "vmid": c.vmid}


async def _services_refresh(client: ProxmoxClient, c: Claimed, ctx: WorkerContext) -> dict[str, Any]:
    status = (await client.lxc.status(c.pve_node, c.vmid)).status
    if status != "running":
        raise StepError.of("invalid_state", f"The container is {status}; services are refreshed while it runs.")
    config = await client.lxc.config(c.pve_node, c.vmid)
    runner = pct_runner(c.endpoint)
    try:
        env = PipelineEnv(
            operation_id=str(c.operation_id),
            plan=CreationPlan(pve_node=c.pve_node, vmid=c.vmid, hostname=config.hostname or "", os_template=""),
            client=client,
            runner=runner,
            reporter=DomainReporter(ctx, c),
            limits=ctx.limits,
        )
        env.ip_address = await resolve_ip(env, attempts=1)
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
    await _run(ctx, operation_id, "delete", _delete)


async def refresh_services(ctx: WorkerContext, operation_id: str) -> None:
    await _run(ctx, operation_id, "services_refresh", _services_refresh)
