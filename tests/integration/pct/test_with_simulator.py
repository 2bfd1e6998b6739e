"""The pct runner against the full simulator: containers created and started over its HTTPS API."""

import httpx
import pytest

from infrahaus_proxmox.pct import PctExecRunner, PctNotRunning, SshTarget, SshUnreachable
from infrahaus_pvesim import RunningNode
from tests.integration.simulator.helpers import create_ct_ok, wait_task


def target(node: RunningNode) -> SshTarget:
    return SshTarget("127.0.0.1", node.ssh_port, "root", password="demo", host_key=node.ssh_host_key)


async def test_created_and_started_container_runs_commands(sim_node: RunningNode, sim_http: httpx.AsyncClient) -> None:
    await create_ct_ok(sim_http, 120, hostname="app1")
    started = await sim_http.post("/nodes/pve/lxc/120/status/start")
    assert (await wait_task(sim_http, started.json()["data"]))["exitstatus"] == "OK"
    interfaces = (await sim_http.get("/nodes/pve/lxc/120/interfaces")).json()["data"]
    eth0 = next(entry for entry in interfaces if entry["name"] == "eth0")

    async with PctExecRunner(target(sim_node)) as runner:
        result = await runner.exec(120, ["bash", "-c", "hostname; hostname -I"], timeout=10)
        assert result.stdout[0] == "app1"
        assert result.stdout[1].split()[0] == eth0["inet"].split("/")[0]
        await runner.push(120, b"hello", "/root/greeting", mode=0o640)
        assert (await runner.exec(120, ["stat", "-c", "%a", "/root/greeting"], timeout=10)).stdout == ["640"]

        stopped = await sim_http.post("/nodes/pve/lxc/120/status/stop")
        await wait_task(sim_http, stopped.json()["data"])
        with pytest.raises(PctNotRunning):
            await runner.exec(120, ["true"], timeout=10)


async def test_unreachable_node_refuses_ssh(sim_node: RunningNode) -> None:
    sim_node.faults.unreachable = True
    with pytest.raises(SshUnreachable):
        await PctExecRunner(target(sim_node), connect_timeout=5).connect()
