"""Several nodes, each with its own ports, latency, guests, certificate and SSH host."""

import time
from pathlib import Path

import httpx

from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig
from tests.fixtures.simulator import pinned_context

TOKEN = {"Authorization": "PVEAPIToken=root@pam!infrahaus=demo-token-secret"}


async def test_three_nodes_with_their_own_latency_and_guests(tmp_path: Path) -> None:
    config = SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path,
        nodes=[
            SimNodeConfig(name="pve1", guests=100, latency=0.0),
            SimNodeConfig(name="pve2", guests=10, latency=0.2),
            SimNodeConfig(name="pve3", guests=0),
        ],
    )
    async with Simulator(config) as sim:
        nodes = sim.nodes
        assert len({n.api_port for n in nodes}) == 3
        assert len({n.ssh_port for n in nodes}) == 3
        assert len({n.fingerprint for n in nodes}) == 3
        assert all(n.ssh_host_key.startswith("ssh-") for n in nodes)
        counts = {}
        for node in nodes:
            async with httpx.AsyncClient(verify=pinned_context(node), headers=TOKEN) as client:
                started = time.monotonic()
                listed = (await client.get(f"{node.api_url}/api2/json/nodes")).json()["data"]
                elapsed = time.monotonic() - started
                assert [n["node"] for n in listed] == [node.name]
                vms = (await client.get(f"{node.api_url}/api2/json/cluster/resources", params={"type": "vm"})).json()
                counts[node.name] = (len(vms["data"]), {v["type"] for v in vms["data"]})
                if node.name == "pve2":
                    assert elapsed >= 0.2
                if node.name == "pve1":
                    # Pre-populated running containers report addresses like created ones.
                    ifaces = await client.get(f"{node.api_url}/api2/json/nodes/pve1/lxc/100/interfaces")
                    assert ifaces.json()["data"][1]["inet"].startswith("192.168.100.")
                # A node answers for itself only.
                other = await client.get(f"{node.api_url}/api2/json/nodes/elsewhere/lxc")
                assert other.status_code == 500
                assert other.reason_phrase.startswith("hostname lookup 'elsewhere' failed")
        assert counts == {"pve1": (100, {"lxc", "qemu"}), "pve2": (10, {"lxc", "qemu"}), "pve3": (0, set())}
        lxc = sim.node("pve1").state.guests[100]
        assert lxc.type == "lxc"
        assert lxc.status == "running"
        assert sim.node("pve1").state.guests[103].type == "qemu"
        fingerprints = [n.fingerprint for n in nodes]
    # The certificates are persisted: a restart keeps the fingerprints clients pinned.
    async with Simulator(config) as again:
        assert [n.fingerprint for n in again.nodes] == fingerprints
