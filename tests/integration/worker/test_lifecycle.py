"""Lifecycle actors against the simulator: start, shutdown, stop, restart, services refresh, delete."""

import time
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from infrahaus_domain.models.containers import DiscoveredService, Event
from infrahaus_domain.models.nodes import VmidReservation
from infrahaus_pvesim import RunningNode
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import (
    delete_container,
    refresh_services,
    restart_container,
    shutdown_container,
    start_container,
    stop_container,
)
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import container, operation, request_action, request_container


async def ready_container(ctx: WorkerContext, user: UserClient, template_id: str, vmid: int) -> str:
    container_id, op_id, _ = await request_container(user, template_id=template_id, vmid=vmid)
    await create_container(ctx, op_id)
    assert (await operation(ctx, op_id)).status == "succeeded"
    return container_id


def live(node: RunningNode, vmid: int) -> str:
    """The simulator's idea of the guest's power state (read fresh each time)."""
    return node.state.guests[vmid].status


def power_requests(node: RunningNode, vmid: int, action: str) -> list[int]:
    return [r.status for r in node.requests if r.method == "POST" and r.path.endswith(f"/lxc/{vmid}/status/{action}")]


async def test_power_cycle_with_lock_contention(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    sim_node: RunningNode,
) -> None:
    container_id = await ready_container(worker_ctx, user_client, templates["web-hello"]["id"], 140)
    assert live(sim_node, 140) == "running"

    op_id = await request_action(user_client, container_id, "shutdown", timeout=5)
    await shutdown_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.result == {"status": "stopped", "changed": True, "forced": False, "timeout": 5}
    assert live(sim_node, 140) == "stopped"

    # A backup holds the lock for a moment: Proxmox accepts the start and its task fails on the lock; the worker
    # starts it again until the lock is gone instead of failing.
    sim_node.faults.lock(140, kind="backup", seconds=1.0)
    started = time.monotonic()
    op_id = await request_action(user_client, container_id, "start")
    await start_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert time.monotonic() - started >= 0.9
    assert live(sim_node, 140) == "running"
    assert set(power_requests(sim_node, 140, "start")) == {200}
    starts = [t for t in sim_node.state.tasks.values() if t.type == "vzstart" and t.id == "140"]
    assert [t.exitstatus for t in starts][-1] == "OK"
    assert "CT is locked (backup)" in [t.exitstatus for t in starts]

    op_id = await request_action(user_client, container_id, "restart")
    await restart_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert power_requests(sim_node, 140, "reboot") == [200]
    assert live(sim_node, 140) == "running"

    op_id = await request_action(user_client, container_id, "stop")
    await stop_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert live(sim_node, 140) == "stopped"
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "ready"


@pytest.mark.timings(lock_wait=2)
async def test_lock_held_too_long_fails_pve_locked(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    sim_node: RunningNode,
) -> None:
    container_id = await ready_container(worker_ctx, user_client, templates["web-hello"]["id"], 141)
    sim_node.faults.lock(141, kind="backup")
    op_id = await request_action(user_client, container_id, "stop")
    await stop_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "pve_locked"
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "ready"  # a failed stop leaves the container as it was


async def test_services_refresh_rediscovers(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
) -> None:
    container_id = await ready_container(worker_ctx, user_client, templates["web-hello"]["id"], 142)
    # Queued the way the API's refresh endpoint queues it.
    async with worker_ctx.unit() as u:
        queued = await u.operations.queue(
            container_id=UUID(container_id), user_id=user_client.user_id, kind="services_refresh"
        )
        op_id = str(queued.id)
    await refresh_services(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.result is not None
    assert "web" in op.result["services"]
    async with worker_ctx.session() as session:
        names = set(
            (
                await session.scalars(
                    select(DiscoveredService.name).where(DiscoveredService.container_id == UUID(container_id))
                )
            ).all()
        )
    assert "web" in names


async def test_delete_destroys_and_removes_the_record(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    sim_node: RunningNode,
) -> None:
    container_id = await ready_container(worker_ctx, user_client, templates["web-hello"]["id"], 143)
    op_id = await request_action(user_client, container_id, "delete")
    await delete_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.result == {"destroyed": True, "vmid": 143}
    # The finished delete still names its container and says how it ended; the `deleted` event outlives the row.
    assert str(op.container_id) == container_id
    assert op.message == "Container deleted."
    async with worker_ctx.session() as session:
        deleted = await session.scalar(
            select(Event).where(Event.container_id == UUID(container_id), Event.type == "deleted")
        )
    assert deleted is not None
    assert deleted.operation_id == op.id
    assert deleted.state == {
        "container": {"lifecycle": "deleted", "status": None},
        "operation": {"id": str(op.id), "kind": "delete", "status": "succeeded", "progress": 100, "step": "delete"},
    }
    assert 143 not in sim_node.state.guests
    [destroy] = [r for r in sim_node.requests if r.method == "DELETE" and r.path.endswith("/lxc/143")]
    assert destroy.params.get("purge") == "1"
    assert destroy.params.get("destroy-unreferenced-disks") == "1"
    assert await container(worker_ctx, container_id) is None
    async with worker_ctx.session() as session:
        assert (await session.scalars(select(VmidReservation).where(VmidReservation.vmid == 143))).first() is None


async def test_delete_of_a_container_already_gone_is_done(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    sim_node: RunningNode,
) -> None:
    container_id = await ready_container(worker_ctx, user_client, templates["web-hello"]["id"], 144)
    op_id = await request_action(user_client, container_id, "delete")
    del sim_node.state.guests[144]  # someone destroyed it on the node directly
    await delete_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.result is not None
    assert (op.result["destroyed"], op.result["reason"]) == (False, "gone")
    assert await container(worker_ctx, container_id) is None
