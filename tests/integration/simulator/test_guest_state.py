"""What a container's config and state look like through the API: pending changes, tags, description, privileged
containers, a DHCP lease that takes time, pvestatd's stale status, and the demo's least-privilege token."""

import asyncio
import time

import httpx
import pytest

from infrahaus_pvesim import RunningNode, SimulatorConfig
from infrahaus_pvesim.config import DEMO_LEAST_TOKEN_ID, DEMO_LEAST_TOKEN_SECRET
from tests.fixtures.simulator import pinned_context
from tests.integration.simulator.helpers import create_ct, create_ct_ok, create_running, start_ct, wait_task


async def test_changes_to_a_running_container_wait_for_the_next_start(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    await create_running(sim_http, 210, features="nesting=1")
    update = await sim_http.put(
        "/nodes/pve/lxc/210/config",
        data={"features": "nesting=0", "nameserver": "9.9.9.9", "memory": "1024", "description": "hot"},
    )
    assert update.status_code == 200, update.reason_phrase
    # Merged view by default, what runs with current=1.
    merged = (await sim_http.get("/nodes/pve/lxc/210/config")).json()["data"]
    current = (await sim_http.get("/nodes/pve/lxc/210/config", params={"current": "1"})).json()["data"]
    assert (merged["features"], merged["nameserver"]) == ("nesting=0", "9.9.9.9")
    assert current["features"] == "nesting=1"
    assert "nameserver" not in current
    # Memory is hot-plugged and the description is a fast-plug option: both apply at once.
    assert (current["memory"], current["description"]) == (1024, "hot\n")
    pending = {e["key"]: e for e in (await sim_http.get("/nodes/pve/lxc/210/pending")).json()["data"]}
    assert pending["features"] == {"key": "features", "value": "nesting=1", "pending": "nesting=0"}
    assert pending["nameserver"] == {"key": "nameserver", "pending": "9.9.9.9"}
    assert "pending" not in pending["memory"]
    # A shutdown does not apply them; the next start does.
    stop = await sim_http.post("/nodes/pve/lxc/210/status/shutdown", data={"forceStop": "1", "timeout": "5"})
    await wait_task(sim_http, stop.json()["data"])
    assert (await sim_http.get("/nodes/pve/lxc/210/config", params={"current": "1"})).json()["data"][
        "features"
    ] == "nesting=1"
    await start_ct(sim_http, 210)
    current = (await sim_http.get("/nodes/pve/lxc/210/config", params={"current": "1"})).json()["data"]
    assert (current["features"], current["nameserver"]) == ("nesting=0", "9.9.9.9")
    assert all("pending" not in e for e in (await sim_http.get("/nodes/pve/lxc/210/pending")).json()["data"])


async def test_config_update_refusals_match_proxmox(sim_http: httpx.AsyncClient) -> None:
    await create_ct_ok(sim_http, 211)
    for data, status, reason in [
        ({"delete": "memory"}, 500, "unable to delete required option 'memory'"),
        ({"unprivileged": "0"}, 500, "unable to modify read-only option: 'unprivileged'"),
        ({"delete": "nonsense"}, 400, "Parameter verification failed."),
    ]:
        response = await sim_http.put("/nodes/pve/lxc/211/config", data=data)
        assert (response.status_code, response.reason_phrase) == (status, reason), data
    # ostype and arch may change; hostname may be deleted.
    ok = await sim_http.put("/nodes/pve/lxc/211/config", data={"ostype": "ubuntu", "delete": "hostname"})
    assert ok.status_code == 200, ok.reason_phrase


async def test_tags_are_normalised_and_the_description_comes_back_with_newlines(sim_http: httpx.AsyncClient) -> None:
    await create_ct_ok(sim_http, 212, tags="Web,infrahaus web;ih-ABC", description="first\nsecond\n\n")
    config = (await sim_http.get("/nodes/pve/lxc/212/config")).json()["data"]
    assert config["tags"] == "ih-abc;infrahaus;web"
    assert config["description"] == "first\nsecond\n"
    listed = (await sim_http.get("/nodes/pve/lxc")).json()["data"]
    assert listed[0]["tags"] == "ih-abc;infrahaus;web"
    bad = await sim_http.put("/nodes/pve/lxc/212/config", data={"tags": "no:colons"})
    assert bad.status_code == 400


async def test_without_unprivileged_a_proxmox_8_container_is_privileged(sim_http: httpx.AsyncClient) -> None:
    upid = await create_ct(sim_http, 213, unprivileged="0")
    await wait_task(sim_http, upid)
    config = (await sim_http.get("/nodes/pve/lxc/213/config")).json()["data"]
    assert "unprivileged" not in config


@pytest.fixture
def simulator_config(simulator_config: SimulatorConfig) -> SimulatorConfig:
    simulator_config.dhcp_lease_delay = 2.0
    # Broadcasts come only at start and when the test asks (RunningNode.broadcast_status).
    simulator_config.status_interval = 3600
    return simulator_config


async def test_a_dhcp_lease_takes_its_time(sim_http: httpx.AsyncClient) -> None:
    await create_running(sim_http, 214)
    started = time.monotonic()
    interfaces = (await sim_http.get("/nodes/pve/lxc/214/interfaces")).json()["data"]
    eth0 = next(i for i in interfaces if i["name"] == "eth0")
    # Booted but not leased yet: a list, eth0 without IPv4 (not null, which means "no container process").
    assert "inet" not in eth0
    assert eth0["inet6"].startswith("fe80::")
    while "inet" not in next(
        i for i in (await sim_http.get("/nodes/pve/lxc/214/interfaces")).json()["data"] if i["name"] == "eth0"
    ):
        assert time.monotonic() - started < 5
        await asyncio.sleep(0.05)
    assert time.monotonic() - started >= 1.0


async def test_cluster_resources_show_what_pvestatd_last_saw(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    await create_ct_ok(sim_http, 215)
    # Listed at once (the VMID list is live), its status unknown until the next broadcast.
    fresh = (await sim_http.get("/cluster/resources", params={"type": "vm"})).json()["data"]
    assert [(r["vmid"], r["status"]) for r in fresh] == [(215, "unknown")]
    sim_node.broadcast_status()
    seen = (await sim_http.get("/cluster/resources", params={"type": "vm"})).json()["data"]
    assert [(r["vmid"], r["status"]) for r in seen] == [(215, "stopped")]
    await start_ct(sim_http, 215)
    # Still the old status: only status/current is live.
    stale = (await sim_http.get("/cluster/resources", params={"type": "vm"})).json()["data"]
    assert stale[0]["status"] == "stopped"
    assert (await sim_http.get("/nodes/pve/lxc/215/status/current")).json()["data"]["status"] == "running"


async def test_the_demo_least_privilege_token_can_do_what_infrahaus_does(sim_node: RunningNode) -> None:
    headers = {"Authorization": f"PVEAPIToken={DEMO_LEAST_TOKEN_ID}={DEMO_LEAST_TOKEN_SECRET}"}
    async with httpx.AsyncClient(
        base_url=f"{sim_node.api_url}/api2/json", verify=pinned_context(sim_node), headers=headers
    ) as client:
        await create_running(client, 216, features="nesting=1", tags="infrahaus;ih-216")
        assert (await client.get("/nodes/pve/status")).status_code == 200
        assert [b["iface"] for b in (await client.get("/nodes/pve/network")).json()["data"] if b["type"] == "bridge"]
        stop = await client.post("/nodes/pve/lxc/216/status/stop")
        await wait_task(client, stop.json()["data"])
        delete = await client.delete("/nodes/pve/lxc/216", params={"purge": "1", "destroy-unreferenced-disks": "1"})
        assert (await wait_task(client, delete.json()["data"]))["exitstatus"] == "OK"
        # What it may not do.
        keyctl = await client.post(
            "/nodes/pve/lxc",
            data={
                "vmid": "217",
                "ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                "rootfs": "local-lvm:4",
                "unprivileged": "1",
                "features": "keyctl=1",
            },
        )
        assert keyctl.status_code == 403
        cluster = await client.get("/cluster/status")
        assert cluster.status_code == 403
