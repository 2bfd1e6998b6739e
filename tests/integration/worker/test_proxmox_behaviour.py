"""The worker against Proxmox's real behaviour (as the simulator models it from Proxmox's source): a least-privilege
token, locks checked inside tasks, a container stopping under a script, pct push's silent failures, a create task
killed half-way, a DHCP lease that takes time, and a create task the node no longer knows."""

import asyncio
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import update

from infrahaus_domain.containers.marker import description_with_marker, marker_tags
from infrahaus_domain.models.containers import Operation
from infrahaus_pvesim import RunningNode, SimulatorConfig
from infrahaus_pvesim.config import DEMO_LEAST_TOKEN_ID, DEMO_LEAST_TOKEN_SECRET
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import (
    delete_container,
    restart_container,
    shutdown_container,
    start_container,
    stop_container,
)
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.fixtures.nodes import node_body
from tests.fixtures.simulator import pinned_context
from tests.integration.simulator.helpers import create_ct, wait_task
from tests.integration.worker.helpers import container, events, operation, request_action, request_container
from tests.integration.worker.test_faults import wait_for_step

DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


def create_tasks(node: RunningNode, vmid: int) -> list[str | None]:
    """Exit statuses of the node's create tasks for `vmid`, oldest first."""
    tasks = sorted(node.state.tasks.values(), key=lambda t: t.started_seq)
    return [t.exitstatus for t in tasks if t.type == "vzcreate" and t.id == str(vmid)]


def volumes(node: RunningNode, vmid: int) -> list[str]:
    return sorted(v for v in node.state.storages["local-lvm"].volumes if f"-{vmid}-disk-" in v)


async def test_with_a_minimal_role_a_creation_and_its_lifecycle_succeed(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    sim_node: RunningNode,
    simulator_config: SimulatorConfig,
    make_template: Any,
) -> None:
    body = node_body(sim_node, simulator_config, token_id=DEMO_LEAST_TOKEN_ID, token_secret=DEMO_LEAST_TOKEN_SECRET)
    registered = await user_client.http.post("/api/nodes", json=body)
    assert registered.status_code == 201, registered.text
    template_id = await make_template(
        "least",
        scripts=[("10-hello", 'echo "hello from $(hostname)"\n')],
        files=[{"name": "app.conf", "target_path": "/etc/app", "content": "x=1\n", "policy": "replace"}],
    )
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=150)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    # Every Proxmox call ran as the privilege-separated token.
    assert {t.user for t in sim_node.state.tasks.values() if t.id == "150"} == {DEMO_LEAST_TOKEN_ID}
    for action, worker in (("stop", stop_container), ("start", start_container), ("delete", delete_container)):
        action_op = await request_action(user_client, container_id, action)
        await worker(worker_ctx, action_op)
        done = await operation(worker_ctx, action_op)
        assert done.status == "succeeded", (action, done.error)
    assert 150 not in sim_node.state.guests


@pytest.mark.timings(lock_wait=1.5)
async def test_a_lock_set_on_the_container_fails_the_task_retries_then_pve_locked(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("locked")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=151)
    await create_container(worker_ctx, op_id)
    # Locked through Proxmox's API, the way a backup job or an admin would.
    locked = await sim_http.put("/nodes/pve/lxc/151/config", data={"lock": "backup"})
    assert locked.status_code == 200, locked.reason_phrase
    stop_op = await request_action(user_client, container_id, "stop")
    await stop_container(worker_ctx, stop_op)
    op = await operation(worker_ctx, stop_op)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "pve_locked"
    assert op.error["detail"].endswith("CT is locked (backup)")
    assert "pct unlock" in op.error["remedy"]
    stops = [t.exitstatus for t in sim_node.state.tasks.values() if t.type == "vzstop" and t.id == "151"]
    # Proxmox took each stop and failed it inside the task; the worker tried again before giving up.
    assert len(stops) >= 2
    assert set(stops) == {"CT is locked (backup)"}
    assert sim_node.state.guests[151].status == "running"


@pytest.mark.timings(lock_wait=10)
async def test_a_config_file_lock_released_within_the_wait_lets_the_operation_succeed(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("file-locked")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=152)
    await create_container(worker_ctx, op_id)
    sim_node.tasks.lock_timeout = 0.3
    sim_node.faults.hold_config_lock(152, 1.5)
    shutdown_op = await request_action(user_client, container_id, "shutdown", timeout=5)
    await asyncio.sleep(0)
    # The first shutdown tasks give up on the file lock after its timeout; one after the holder let go succeeds.
    await shutdown_container(worker_ctx, shutdown_op)
    op = await operation(worker_ctx, shutdown_op)
    assert op.status == "succeeded", op.error
    statuses = [t.exitstatus for t in sim_node.state.tasks.values() if t.type == "vzshutdown"]
    assert statuses[0] == "can't lock file '/run/lock/lxc/pve-config-152.lock' - got timeout"
    assert statuses[-1] == "OK"


async def test_a_script_whose_container_stops_mid_run_is_classified_not_running(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("stopping", scripts=[("10-long", 'log_info "working"\nsleep 30\n')])
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=153)
    run = asyncio.create_task(create_container(worker_ctx, op_id))
    await wait_for_step(worker_ctx, op_id, "scripts")
    await asyncio.sleep(0.5)
    stopped = await sim_http.post("/nodes/pve/lxc/153/status/stop")
    assert (await wait_task(sim_http, stopped.json()["data"]))["exitstatus"] == "OK"
    await asyncio.wait_for(run, 20)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "not_running", op.error
    assert op.step == "scripts"
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "error"


async def test_a_pushed_file_that_differs_inside_the_container_fails_the_files_step(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    content = "setting=value\n" * 50
    template_id = await make_template(
        "corrupted",
        files=[
            {"name": "big.conf", "target_path": "/etc/app", "content": content, "policy": "replace", "mode": "0600"},
            {"name": "good.conf", "target_path": "/etc/app", "content": "ok\n", "policy": "replace"},
        ],
    )
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=154)
    # The first pct push (big.conf) writes a short file and still exits 0 without a word.
    sim_node.faults.corrupt_next_push(154)
    run = asyncio.create_task(create_container(worker_ctx, op_id))
    await asyncio.wait_for(run, 30)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "file_failed", op.error
    assert f"/etc/app/big.conf: size {len(content) // 2}, expected {len(content)}" in op.error["detail"]
    assert "good.conf" not in op.error["detail"]
    assert op.step == "files"


async def test_a_killed_create_leaving_lock_create_is_cleaned_up_and_created_again(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("killed")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=155)
    sim_node.faults.kill_next_task(155, "vzcreate")
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert create_tasks(sim_node, 155) == ["unexpected status", "OK"]
    # The half-created container was unlocked and destroyed with the disk it had: no orphan volume.
    assert volumes(sim_node, 155) == ["local-lvm:vm-155-disk-0"]
    assert sim_node.state.guests[155].lock is None
    assert any("Removed a half-created container" in e.message for e in await events(worker_ctx, container_id))


@pytest.mark.timings(lock_wait=2)  # a lock nobody proves ours is waited out this long
async def test_a_half_created_leftover_no_saved_task_names_is_never_touched_even_with_our_token(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("leftover")
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=156)
    # A create with the node's own token, killed half-way: `lock: create` and a disk, the task in the node's list,
    # nothing saved by this operation. Whoever made it (a script sharing the token, another installation), nothing
    # proves it this container's: it is left as it is.
    sim_node.faults.kill_next_task(156, "vzcreate")
    await wait_task(sim_http, await create_ct(sim_http, 156))
    assert sim_node.state.guests[156].lock == "create"
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "vmid_taken"
    assert create_tasks(sim_node, 156) == ["unexpected status"]
    assert sim_node.state.guests[156].lock == "create"
    assert volumes(sim_node, 156) == ["local-lvm:vm-156-disk-0"]


@pytest.mark.timings(lock_wait=2)
async def test_after_a_crash_before_its_task_id_was_saved_the_guest_carrying_our_marker_is_resumed(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("crashed-after-create")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=159)
    # An earlier attempt sent the create (with this container's marker) and died before saving the task's id.
    marker = {
        "tags": ";".join(marker_tags(UUID(container_id))),
        "description": description_with_marker(UUID(container_id), None),
    }
    await wait_task(sim_http, await create_ct(sim_http, 159, **marker))
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert create_tasks(sim_node, 159) == ["OK"]  # resumed on that guest, not created again


@pytest.mark.timings(lock_wait=2)  # a lock nobody proves ours is waited out this long
async def test_a_half_created_guest_of_someone_else_is_never_touched(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("not-ours")
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=157)
    # Another token's create, killed half-way.
    sim_node.faults.kill_next_task(157, "vzcreate")
    async with httpx.AsyncClient(
        base_url=f"{sim_node.api_url}/api2/json",
        verify=pinned_context(sim_node),
        headers={"Authorization": f"PVEAPIToken={DEMO_LEAST_TOKEN_ID}={DEMO_LEAST_TOKEN_SECRET}"},
    ) as other:
        await wait_task(other, await create_ct(other, 157), headers=None)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "vmid_taken"
    guest = sim_node.state.guests[157]
    assert guest.lock == "create"
    assert volumes(sim_node, 157) == ["local-lvm:vm-157-disk-0"]


async def test_resuming_with_a_create_task_the_node_does_not_know_checks_what_exists(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("unknown-upid")
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=158)
    # The resume marker names a task the node has no log of (400 "no such task" on a real node).
    unknown = "UPID:pve:00001234:00001234:65432100:vzcreate:158:root@pam!infrahaus:"
    async with worker_ctx.session() as session:
        await session.execute(
            update(Operation).where(Operation.id == UUID(op_id)).values(result={"checkpoint": {"create_upid": unknown}})
        )
        await session.commit()
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert create_tasks(sim_node, 158) == ["OK"]


@pytest.mark.timings(lock_wait=1.5)
async def test_a_restart_of_a_locked_container_fails_pve_locked_not_a_bare_start_failure(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("reboot-locked")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=160)
    await create_container(worker_ctx, op_id)
    sim_node.faults.lock(160, "backup")
    restart_op = await request_action(user_client, container_id, "restart")
    await restart_container(worker_ctx, restart_op)
    op = await operation(worker_ctx, restart_op)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "pve_locked", op.error
    # Proxmox's reboot stopped it and could not start it again.
    reboots = [t.exitstatus for t in sim_node.state.tasks.values() if t.type == "vzreboot"]
    assert reboots == ["startup for container '160' failed"]
    assert sim_node.state.guests[160].status == "stopped"
    sim_node.faults.unlock(160)
    again = await request_action(user_client, container_id, "start")
    await start_container(worker_ctx, again)
    assert (await operation(worker_ctx, again)).status == "succeeded"
    # Read again: the start changed it (a fresh read, not the value narrowed above).
    assert {vmid: g.status for vmid, g in sim_node.state.guests.items() if vmid == 160} == {160: "running"}


async def test_a_storage_the_node_does_not_have_fails_validation_naming_the_field(
    worker_ctx: WorkerContext, user_client: UserClient, registered_node: dict[str, Any], make_template: Any
) -> None:
    # Proxmox answers an unknown storage with a plain 500 `storage 'x' does not exist` (not a 400 with `errors`).
    template_id = await make_template("no-such-storage")
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=161, storage="fast-ssd")
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert (op.error["code"], op.error["field"]) == ("validation_failed", "storage"), op.error
    assert "storage 'fast-ssd' does not exist" in op.error["detail"]
