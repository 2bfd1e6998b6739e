"""Locks as pve-container takes them: the config lock (`lock: <kind>`) checked inside the lifecycle tasks and in the
DELETE/PUT calls, the config *file* lock with its timeout, and what a killed create leaves behind."""

import asyncio

import httpx
import pytest

from infrahaus_pvesim import RunningNode
from tests.integration.simulator.helpers import create_ct, create_ct_ok, create_running, wait_task

FILE_LOCK_TIMEOUT = "can't lock file '/run/lock/lxc/pve-config-{vmid}.lock' - got timeout"


async def _task(client: httpx.AsyncClient, method: str, path: str, **data: str) -> dict[str, object]:
    response = await client.request(method, path, data=data or None)
    assert response.status_code == 200, response.reason_phrase
    return await wait_task(client, response.json()["data"], timeout=20)


@pytest.mark.parametrize("kind", ["backup", "snapshot", "create", "mounted"])
async def test_lifecycle_tasks_fail_inside_the_task_on_a_config_lock(
    sim_http: httpx.AsyncClient, sim_node: RunningNode, kind: str
) -> None:
    await create_running(sim_http, 200)
    sim_node.faults.lock(200, kind)
    # shutdown exempts no lock; stop (and start) let a `mounted` container through.
    shutdown = await _task(sim_http, "POST", "/nodes/pve/lxc/200/status/shutdown", forceStop="1", timeout="5")
    assert shutdown["exitstatus"] == f"CT is locked ({kind})"
    stop = await _task(sim_http, "POST", "/nodes/pve/lxc/200/status/stop")
    assert stop["exitstatus"] == ("OK" if kind == "mounted" else f"CT is locked ({kind})")
    if kind != "mounted":
        start_refused = await sim_http.post("/nodes/pve/lxc/200/status/start")
        assert start_refused.reason_phrase == "CT 200 already running"
        sim_node.faults.unlock(200)
        await _task(sim_http, "POST", "/nodes/pve/lxc/200/status/stop")
        sim_node.faults.lock(200, kind)
    start = await _task(sim_http, "POST", "/nodes/pve/lxc/200/status/start")
    assert start["exitstatus"] == ("OK" if kind == "mounted" else f"CT is locked ({kind})")


async def test_reboot_does_not_check_the_lock_and_leaves_a_locked_container_stopped(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    await create_running(sim_http, 201)
    sim_node.faults.lock(201, "backup")
    reboot = await _task(sim_http, "POST", "/nodes/pve/lxc/201/status/reboot")
    assert reboot["exitstatus"] == "startup for container '201' failed"
    log = [e["t"] for e in (await sim_http.get(f"/nodes/pve/tasks/{reboot['upid']}/log")).json()["data"]]
    assert "CT is locked (backup)" in log
    assert (await sim_http.get("/nodes/pve/lxc/201/status/current")).json()["data"]["status"] == "stopped"


async def test_delete_and_config_update_refuse_in_the_call(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_ct_ok(sim_http, 202)
    sim_node.faults.lock(202, "backup")
    delete = await sim_http.delete("/nodes/pve/lxc/202", params={"purge": "1"})
    assert (delete.status_code, delete.reason_phrase) == (500, "CT is locked (backup)")
    update = await sim_http.put("/nodes/pve/lxc/202/config", data={"memory": "1024"})
    assert (update.status_code, update.reason_phrase) == (500, "CT is locked (backup)")
    # Not even the lock itself can be removed through the API: only `pct unlock` can.
    unlock = await sim_http.put("/nodes/pve/lxc/202/config", data={"delete": "lock"})
    assert (unlock.status_code, unlock.reason_phrase) == (500, "CT is locked (backup)")
    skip = await sim_http.post("/nodes/pve/lxc/202/status/start", data={"skiplock": "1"})
    assert (skip.status_code, skip.json()["errors"]) == (400, {"skiplock": "Only root may use this option."})


async def test_a_lock_set_through_the_api_is_enforced(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_running(sim_http, 203)
    set_lock = await sim_http.put("/nodes/pve/lxc/203/config", data={"lock": "backup"})
    assert set_lock.status_code == 200, set_lock.reason_phrase
    assert sim_node.state.guests[203].lock == "backup"
    assert (await sim_http.get("/nodes/pve/lxc/203/config")).json()["data"]["lock"] == "backup"
    assert (await sim_http.get("/nodes/pve/lxc")).json()["data"][0]["lock"] == "backup"
    stop = await _task(sim_http, "POST", "/nodes/pve/lxc/203/status/stop")
    assert stop["exitstatus"] == "CT is locked (backup)"


async def test_the_config_file_lock_times_out_inside_the_task(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    await create_running(sim_http, 204)
    sim_node.tasks.lock_timeout = 0.3
    sim_node.faults.hold_config_lock(204, 1.0)
    await asyncio.sleep(0)
    stop = await _task(sim_http, "POST", "/nodes/pve/lxc/204/status/stop")
    assert stop["exitstatus"] == FILE_LOCK_TIMEOUT.format(vmid=204)
    log = [e["t"] for e in (await sim_http.get(f"/nodes/pve/tasks/{stop['upid']}/log")).json()["data"]]
    assert log[0] == "trying to acquire lock..."
    # A config update waits for the same lock in the call, and answers the timeout as a 500.
    update = await sim_http.put("/nodes/pve/lxc/204/config", data={"memory": "1024"})
    assert (update.status_code, update.reason_phrase) == (500, FILE_LOCK_TIMEOUT.format(vmid=204))
    # A holder that lets go within the timeout only delays the task.
    sim_node.tasks.lock_timeout = 5.0
    sim_node.faults.hold_config_lock(204, 0.3)
    await asyncio.sleep(0)
    assert (await _task(sim_http, "POST", "/nodes/pve/lxc/204/status/stop"))["exitstatus"] == "OK"


async def test_a_killed_create_leaves_only_the_create_lock_and_its_disk(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    sim_node.faults.kill_next_task(205, "vzcreate")
    status = await wait_task(sim_http, await create_ct(sim_http, 205, tags="infrahaus"))
    assert status["exitstatus"] == "unexpected status"
    log = [e["t"] for e in (await sim_http.get(f"/nodes/pve/tasks/{status['upid']}/log")).json()["data"]]
    assert not any(line.startswith("TASK ") for line in log)
    config = (await sim_http.get("/nodes/pve/lxc/205/config")).json()["data"]
    assert set(config) == {"lock", "digest"}
    assert config["lock"] == "create"
    volumes = [v["volid"] for v in (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"]]
    assert volumes == ["local-lvm:vm-205-disk-0"]
    [listed] = (await sim_http.get("/nodes/pve/tasks", params={"vmid": "205", "typefilter": "vzcreate"})).json()["data"]
    assert listed["status"] == "unexpected status"
    # Proxmox refuses to destroy it while it holds the lock; `pct unlock` (here the fault's unlock) first.
    refused = await sim_http.delete("/nodes/pve/lxc/205", params={"purge": "1", "destroy-unreferenced-disks": "1"})
    assert refused.reason_phrase == "CT is locked (create)"
    sim_node.faults.unlock(205)
    # The config references no disk, so only destroy-unreferenced-disks frees the one the create allocated.
    destroyed = await _task(sim_http, "DELETE", "/nodes/pve/lxc/205?purge=1&destroy-unreferenced-disks=1")
    assert destroyed["exitstatus"] == "OK"
    assert (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"] == []
    # The VMID is free again.
    await create_ct_ok(sim_http, 205)


async def test_without_destroy_unreferenced_disks_the_orphan_stays(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    sim_node.faults.kill_next_task(206, "vzcreate")
    await wait_task(sim_http, await create_ct(sim_http, 206))
    sim_node.faults.unlock(206)
    assert (await _task(sim_http, "DELETE", "/nodes/pve/lxc/206?purge=1"))["exitstatus"] == "OK"
    volumes = [v["volid"] for v in (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"]]
    assert volumes == ["local-lvm:vm-206-disk-0"]
    # A new container with that VMID gets the next free volume name.
    await create_ct_ok(sim_http, 206)
    config = (await sim_http.get("/nodes/pve/lxc/206/config")).json()["data"]
    assert config["rootfs"].startswith("local-lvm:vm-206-disk-1,")
