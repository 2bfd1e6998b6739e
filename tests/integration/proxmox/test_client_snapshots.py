"""The client's snapshot calls against the simulator; every request is checked against Proxmox's schema
(`proxmox_contract`)."""

import pytest

from infrahaus_proxmox import LxcCreate, LxcNetwork, validate_snapshot_name
from infrahaus_proxmox.errors import ProxmoxNotFound, ProxmoxServerError, ProxmoxTaskFailed
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.config import DEMO_OSTEMPLATE
from infrahaus_pvesim.state import SimStorage
from tests.fixtures.proxmox_client import ClientFactory


async def _create(client: ClientFactory, vmid: int, rootfs: str) -> None:
    pve = client()
    upid = await pve.lxc.create(
        "pve",
        LxcCreate(
            vmid=vmid,
            ostemplate=DEMO_OSTEMPLATE,
            rootfs=rootfs,
            networks=[LxcNetwork(name="eth0", bridge="vmbr0", ip="dhcp")],
        ),
    )
    await pve.tasks.wait(upid, timeout=20, poll_interval=0.02)


async def test_snapshot_list_create_rollback_delete(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    pve = pve_client()
    await _create(pve_client, 310, "local-lvm:4")
    assert await pve.snapshots.has_feature("pve", 310)

    upid = await pve.snapshots.create("pve", 310, "ih-first", description="before a sync")
    assert upid.type == "vzsnapshot"
    await pve.tasks.wait(upid, timeout=20, poll_interval=0.02)
    listed = {s.name: s for s in await pve.snapshots.list("pve", 310)}
    assert listed["ih-first"].description == "before a sync"
    assert listed["ih-first"].snaptime
    assert listed["current"].is_current
    assert listed["current"].parent == "ih-first"
    config = await pve.snapshots.config("pve", 310, "ih-first")
    assert config.get("net0") is not None

    upid = await pve.snapshots.rollback("pve", 310, "ih-first", start=True)
    assert upid.type == "vzrollback"
    await pve.tasks.wait(upid, timeout=20, poll_interval=0.02)
    assert (await pve.lxc.status("pve", 310)).status == "running"

    upid = await pve.snapshots.delete("pve", 310, "ih-first")
    assert upid.type == "vzdelsnapshot"
    await pve.tasks.wait(upid, timeout=20, poll_interval=0.02)
    assert [s.name for s in await pve.snapshots.list("pve", 310)] == ["current"]

    with pytest.raises(ProxmoxNotFound):
        await pve.snapshots.config("pve", 310, "ih-first")


async def test_refusals(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    sim_node.state.storages["local-dir"] = SimStorage(name="local-dir", type="dir", content={"rootdir"}, used=0)
    pve = pve_client()
    await _create(pve_client, 311, "local-dir:4")
    assert not await pve.snapshots.has_feature("pve", 311)
    upid = await pve.snapshots.create("pve", 311, "ih-a")
    with pytest.raises(ProxmoxTaskFailed, match="snapshot feature is not available"):
        await pve.tasks.wait(upid, timeout=20, poll_interval=0.02)
    with pytest.raises(ValueError, match="invalid snapshot name"):
        validate_snapshot_name("current")
    with pytest.raises(ValueError, match="invalid snapshot name"):
        await pve.snapshots.create("pve", 311, "a.b")
    with pytest.raises(ProxmoxNotFound):
        await pve.snapshots.list("pve", 399)
    raw = pve_client(contract=False)
    with pytest.raises(ProxmoxServerError, match="reserved name"):
        await raw.request("POST", "/nodes/pve/lxc/311/snapshot", {"snapname": "vzdump"})
