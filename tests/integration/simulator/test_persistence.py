"""A simulator with `persist` keeps each node's guests, volumes and task history in its data directory: started
again on the same directory it still has them, and a task cut off by the stop ends like a killed Proxmox task."""

import asyncio
import shutil
import time
from pathlib import Path

import httpx

from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig
from infrahaus_pvesim.config import DEMO_TOKEN_ID, DEMO_TOKEN_SECRET
from infrahaus_pvesim.persist import STATE_FILE
from tests.fixtures.simulator import pinned_context
from tests.integration.simulator.helpers import create_ct, create_running, wait_task


def config(data_dir: Path, *, task_duration: float = 0.02) -> SimulatorConfig:
    return SimulatorConfig(
        data_dir=data_dir, nodes=[SimNodeConfig(name="pve", guests=2)], task_duration=task_duration, persist=True
    )


def client(sim: Simulator) -> httpx.AsyncClient:
    node = sim.node("pve")
    return httpx.AsyncClient(
        base_url=f"{node.api_url}/api2/json",
        verify=pinned_context(node),
        headers={"Authorization": f"PVEAPIToken={DEMO_TOKEN_ID}={DEMO_TOKEN_SECRET}"},
        timeout=10,
    )


async def test_a_restarted_simulator_has_its_guests_volumes_and_tasks(tmp_path: Path) -> None:
    first = Simulator(config(tmp_path, task_duration=0.02))
    await first.start()
    try:
        async with client(first) as http:
            await create_running(http, 120, tags="infrahaus;web", description="kept")
            response = await http.delete("/nodes/pve/lxc/101", params={"purge": "1"})
            await wait_task(http, response.json()["data"])
            before = {vmid: (g.type, g.status, dict(g.config)) for vmid, g in first.node().state.guests.items()}
            volumes = dict(first.node().state.storages["local-lvm"].volumes)
            tasks = {t.upid: t.exitstatus for t in first.node().state.tasks.values()}
    finally:
        await first.stop()

    second = Simulator(config(tmp_path))
    await second.start()
    try:
        state = second.node().state
        assert {vmid: (g.type, g.status, dict(g.config)) for vmid, g in state.guests.items()} == before
        assert 101 not in state.guests  # destroyed before the restart: not brought back by the demo layout
        assert state.storages["local-lvm"].volumes == volumes
        assert {t.upid: t.exitstatus for t in state.tasks.values()} == tasks
        async with client(second) as http:
            config_ = (await http.get("/nodes/pve/lxc/120/config")).json()["data"]
            assert (config_["tags"], config_["description"]) == ("infrahaus;web", "kept\n")
            listed = (await http.get("/nodes/pve/tasks", params={"vmid": 120, "source": "all"})).json()["data"]
            assert {t["type"] for t in listed} == {"vzcreate", "vzstart"}
            # The restarted node works on it as before.
            response = await http.post("/nodes/pve/lxc/120/status/stop")
            assert (await wait_task(http, response.json()["data"]))["exitstatus"] == "OK"
    finally:
        await second.stop()


async def test_a_create_cut_off_by_a_crash_is_left_as_a_killed_one(tmp_path: Path) -> None:
    first = Simulator(config(tmp_path / "first", task_duration=30))
    await first.start()
    try:
        async with client(first) as http:
            upid = await create_ct(http, 121)
        state_file = tmp_path / "first" / "pve" / STATE_FILE
        deadline = time.monotonic() + 10
        while upid not in state_file.read_text():  # saved while the create task runs
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        # The simulator dies here: what is on disk now is all a restart finds.
        shutil.copytree(tmp_path / "first", tmp_path / "second")
    finally:
        await first.stop()

    second = Simulator(config(tmp_path / "second"))
    await second.start()
    try:
        async with client(second) as http:
            status = await wait_task(http, upid)
            assert status["exitstatus"] == "unexpected status"
            config_ = (await http.get("/nodes/pve/lxc/121/config")).json()["data"]
            assert config_["lock"] == "create"
            assert "hostname" not in config_  # only the lock, as a killed create leaves it
    finally:
        await second.stop()
