"""The simulator's snapshot API answers like pve-container's (Snapshot.pm, AbstractConfig.pm, the storage plugins'
volume_has_feature), and a snapshot holds a real copy of the container's tree: a rollback restores its files."""

import time
from typing import Any

import httpx
import pytest

from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.state import SimStorage
from tests.integration.simulator.helpers import create_ct_ok, create_running, wait_task


def add_storage(node: RunningNode, name: str, type_: str) -> None:
    node.state.storages[name] = SimStorage(name=name, type=type_, content={"rootdir", "images"}, used=0)


async def task(client: httpx.AsyncClient, method: str, path: str, **params: str) -> dict[str, Any]:
    if method == "DELETE":
        response = await client.delete(path, params=params or None)
    else:
        response = await client.request(method, path, data=params or None)
    assert response.status_code == 200, response.reason_phrase
    return await wait_task(client, response.json()["data"])


async def snapshots(client: httpx.AsyncClient, vmid: int) -> dict[str, dict[str, Any]]:
    response = await client.get(f"/nodes/pve/lxc/{vmid}/snapshot")
    assert response.status_code == 200, response.reason_phrase
    return {entry["name"]: entry for entry in response.json()["data"]}


async def test_snapshot_rollback_restores_files_and_config(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_running(sim_http, 300, cores="1")
    guest = sim_node.state.guests[300]
    assert guest.rootfs is not None
    (guest.rootfs / "etc/app.conf").write_text("version=1\n")

    feature = await sim_http.get("/nodes/pve/lxc/300/feature", params={"feature": "snapshot"})
    assert feature.json()["data"] == {"hasFeature": 1}

    done = await task(sim_http, "POST", "/nodes/pve/lxc/300/snapshot", snapname="before", description="first")
    assert done["exitstatus"] == "OK"
    assert done["type"] == "vzsnapshot"
    listed = await snapshots(sim_http, 300)
    assert listed["before"]["description"] == "first"
    assert listed["before"]["snaptime"] > 0
    assert "parent" not in listed["before"]
    assert listed["current"]["parent"] == "before"
    assert listed["current"]["running"] == 1
    config = (await sim_http.get("/nodes/pve/lxc/300/config")).json()["data"]
    assert config["parent"] == "before"
    assert "lock" not in config

    # Change the files and the config after the snapshot.
    (guest.rootfs / "etc/app.conf").write_text("version=2\n")
    (guest.rootfs / "etc/new.conf").write_text("new\n")
    assert (await sim_http.put("/nodes/pve/lxc/300/config", data={"cores": "4"})).status_code == 200

    done = await task(sim_http, "POST", "/nodes/pve/lxc/300/snapshot/before/rollback")
    assert done["exitstatus"] == "OK", done
    assert done["type"] == "vzrollback"
    # A running container is stopped hard; without start=1 it stays stopped.
    status = (await sim_http.get("/nodes/pve/lxc/300/status/current")).json()["data"]
    assert status["status"] == "stopped"
    assert (guest.rootfs / "etc/app.conf").read_text() == "version=1\n"
    assert not (guest.rootfs / "etc/new.conf").exists()
    config = (await sim_http.get("/nodes/pve/lxc/300/config")).json()["data"]
    assert config["cores"] == 1
    assert config["parent"] == "before"

    # Rolling back with start=1 starts it in the same task; the snapshot stays for another rollback.
    (guest.rootfs / "etc/app.conf").write_text("version=3\n")
    done = await task(sim_http, "POST", "/nodes/pve/lxc/300/snapshot/before/rollback", start="1")
    assert done["exitstatus"] == "OK", done
    assert (await sim_http.get("/nodes/pve/lxc/300/status/current")).json()["data"]["status"] == "running"
    assert (guest.rootfs / "etc/app.conf").read_text() == "version=1\n"

    done = await task(sim_http, "DELETE", "/nodes/pve/lxc/300/snapshot/before")
    assert done["exitstatus"] == "OK", done
    assert done["type"] == "vzdelsnapshot"
    listed = await snapshots(sim_http, 300)
    assert set(listed) == {"current"}
    assert "parent" not in listed["current"]
    assert not any((sim_node.state.data_dir / "snapshots" / "300").iterdir())


async def test_a_directory_storage_cannot_snapshot_in_the_task(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    add_storage(sim_node, "local-dir", "dir")
    await create_ct_ok(sim_http, 301, rootfs="local-dir:4")
    feature = await sim_http.get("/nodes/pve/lxc/301/feature", params={"feature": "snapshot"})
    assert feature.json()["data"] == {"hasFeature": 0}
    done = await task(sim_http, "POST", "/nodes/pve/lxc/301/snapshot", snapname="s1")
    assert done["exitstatus"] == "snapshot feature is not available"
    assert set(await snapshots(sim_http, 301)) == {"current"}
    assert "lock" not in (await sim_http.get("/nodes/pve/lxc/301/config")).json()["data"]


async def test_names_locks_and_missing_snapshots(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_ct_ok(sim_http, 302)
    reserved = await sim_http.post("/nodes/pve/lxc/302/snapshot", data={"snapname": "current"})
    assert reserved.status_code == 500
    assert reserved.reason_phrase == "unable to use snapshot name 'current' (reserved name)"
    bad = await sim_http.post("/nodes/pve/lxc/302/snapshot", data={"snapname": "1abc"})
    assert bad.status_code == 400
    assert "snapname" in bad.json()["errors"]

    assert (await task(sim_http, "POST", "/nodes/pve/lxc/302/snapshot", snapname="s1"))["exitstatus"] == "OK"
    again = await task(sim_http, "POST", "/nodes/pve/lxc/302/snapshot", snapname="s1")
    assert again["exitstatus"] == "snapshot name 's1' already used"
    missing = await task(sim_http, "POST", "/nodes/pve/lxc/302/snapshot/nope/rollback")
    assert missing["exitstatus"] == "snapshot 'nope' does not exist"
    missing = await task(sim_http, "DELETE", "/nodes/pve/lxc/302/snapshot/nope")
    assert missing["exitstatus"] == "snapshot 'nope' does not exist"
    config = await sim_http.get("/nodes/pve/lxc/302/snapshot/nope/config")
    assert config.status_code == 500
    assert config.reason_phrase == "snapshot 'nope' does not exist"

    # A lock held by someone else (a backup) fails each snapshot task with Proxmox's message.
    assert (await sim_http.put("/nodes/pve/lxc/302/config", data={"lock": "backup"})).status_code == 200
    for method, path, params in (
        ("POST", "/nodes/pve/lxc/302/snapshot", {"snapname": "s2"}),
        ("POST", "/nodes/pve/lxc/302/snapshot/s1/rollback", {}),
        ("DELETE", "/nodes/pve/lxc/302/snapshot/s1", {}),
    ):
        done = await task(sim_http, method, path, **params)
        assert done["exitstatus"] == "CT is locked (backup)", (path, done)

    # The snapshot's own config and its description update.
    snap_config = (await sim_http.get("/nodes/pve/lxc/302/snapshot/s1/config")).json()["data"]
    assert snap_config["hostname"] == "ct302"
    assert "lock" not in snap_config


async def test_the_snapshot_lock_is_held_while_the_task_runs(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    await create_ct_ok(sim_http, 303)
    sim_node.tasks.duration = 1.0
    response = await sim_http.post("/nodes/pve/lxc/303/snapshot", data={"snapname": "s1"})
    upid = response.json()["data"]
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        config = (await sim_http.get("/nodes/pve/lxc/303/config")).json()["data"]
        if "lock" in config:
            seen.add(config["lock"])
        status = (await sim_http.get(f"/nodes/pve/tasks/{upid}/status")).json()["data"]
        if status["status"] == "stopped":
            break
    assert status["exitstatus"] == "OK"
    assert seen == {"snapshot"}


@pytest.mark.parametrize("storage_type", ["zfspool", "lvmthin"])
async def test_zfs_rolls_back_only_to_the_newest_snapshot(
    sim_http: httpx.AsyncClient, sim_node: RunningNode, storage_type: str
) -> None:
    add_storage(sim_node, "fast", storage_type)
    await create_ct_ok(sim_http, 304, rootfs="fast:4")
    for name in ("s1", "s2"):
        assert (await task(sim_http, "POST", "/nodes/pve/lxc/304/snapshot", snapname=name))["exitstatus"] == "OK"
    listed = await snapshots(sim_http, 304)
    assert listed["s2"]["parent"] == "s1"
    done = await task(sim_http, "POST", "/nodes/pve/lxc/304/snapshot/s1/rollback")
    if storage_type == "zfspool":
        assert done["exitstatus"] == "can't rollback, 's1' is not most recent snapshot on 'fast:subvol-304-disk-0'"
    else:
        assert done["exitstatus"] == "OK"
    # Deleting the parent re-points its child.
    assert (await task(sim_http, "DELETE", "/nodes/pve/lxc/304/snapshot/s1"))["exitstatus"] == "OK"
    assert "parent" not in (await snapshots(sim_http, 304))["s2"]
