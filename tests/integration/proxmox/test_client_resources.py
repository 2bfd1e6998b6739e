"""Typed resource APIs of ProxmoxClient against the simulator: reads, the LXC lifecycle, odd values."""

from typing import Any, cast

import pytest

from infrahaus_proxmox import (
    LxcCreate,
    LxcFeatures,
    LxcNetwork,
    ProxmoxError,
    ProxmoxNotFound,
    ProxmoxValidationError,
)
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.config import DEMO_OSTEMPLATE, DEMO_TEMPLATES
from infrahaus_pvesim.state import SimGuest
from tests.fixtures.proxmox_client import ClientFactory, ContractRecorder

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@infrahaus"


async def test_node_reads(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client()
    (node,) = await client.nodes.list()
    assert node.node == "pve"
    assert node.online
    assert node.maxmem > 0
    assert node.ssl_fingerprint == sim_node.fingerprint
    status = await client.nodes.status("pve")
    assert status.memory.total > status.memory.used > 0
    assert status.rootfs.total > status.rootfs.used > 0
    assert status.pveversion.startswith("pve-manager/")
    assert status.kversion.startswith("Linux")
    assert status.cpuinfo.cpus == 8
    bridges = await client.nodes.network("pve")
    assert [(b.iface, b.type, b.cidr) for b in bridges] == [("vmbr0", "bridge", "192.168.100.2/24")]
    assert bridges[0].active


async def test_storage_reads(pve_client: ClientFactory) -> None:
    client = pve_client()
    storages = {s.storage: s for s in await client.storage.list("pve")}
    assert set(storages) == {"local", "local-lvm"}
    assert "vztmpl" in storages["local"].content
    assert "rootdir" in storages["local-lvm"].content
    assert storages["local-lvm"].enabled
    assert storages["local-lvm"].avail > 0
    rootdir = await client.storage.list("pve", content="rootdir")
    assert [s.storage for s in rootdir] == ["local-lvm"]
    templates = await client.storage.content("pve", "local")
    assert sorted(v.volid for v in templates) == sorted(DEMO_TEMPLATES)
    assert all(v.content == "vztmpl" and v.size > 0 for v in templates)


async def test_cluster_reads(pve_client: ClientFactory) -> None:
    client = pve_client()
    kinds = {r.type for r in await client.cluster.resources()}
    assert {"node", "storage"} <= kinds
    assert [r.id for r in await client.cluster.resources(type="node")] == ["node/pve"]
    assert await client.cluster.nextid() == 100
    assert await client.cluster.nextid(vmid=4242) == 4242


async def test_lxc_lifecycle(
    pve_client: ClientFactory, sim_node: RunningNode, proxmox_contract: ContractRecorder
) -> None:
    client = pve_client()
    vmid = await client.cluster.nextid()
    create = LxcCreate(
        vmid=vmid,
        ostemplate=DEMO_OSTEMPLATE,
        rootfs="local-lvm:8",
        hostname="web-1",
        cores=2,
        memory=1024,
        swap=256,
        networks=[LxcNetwork(name="eth0", bridge="vmbr0", ip="dhcp", firewall=True)],
        nameserver="1.1.1.1",
        ssh_public_keys=SSH_KEY,
        features=LxcFeatures(nesting=True),
        onboot=True,
        tags=["web", "prod"],
        description="lifecycle test",
        password="root-pass-never-logged",
    )
    upid = await client.lxc.create("pve", create)
    assert upid.node == "pve"
    assert upid.type == "vzcreate"
    assert upid.id == str(vmid)
    assert upid.user == "root@pam!infrahaus"
    done = await client.tasks.wait(upid, timeout=20, poll_interval=0.02)
    assert done.exitstatus == "OK"
    with pytest.raises(ProxmoxValidationError, match="Parameter verification failed") as taken:
        await client.cluster.nextid(vmid=vmid)
    assert "vmid" in taken.value.errors

    config = await client.lxc.config("pve", vmid)
    assert (config.hostname, config.cores, config.memory, config.swap) == ("web-1", 2, 1024, 256)
    assert config.onboot
    assert config.unprivileged
    # Proxmox lower-cases, de-duplicates and sorts tags.
    assert config.tags == ["prod", "web"]
    assert config.features.nesting
    assert config.rootfs is not None
    assert (config.rootfs.storage, config.rootfs.size) == ("local-lvm", "8G")
    net0 = config.networks["net0"]
    assert (net0.name, net0.bridge, net0.ip, net0.firewall) == ("eth0", "vmbr0", "dhcp", True)
    assert net0.hwaddr
    assert config.digest

    # Options change in the call; a stale digest is refused (the config changed since it was read).
    await client.lxc.update_config(
        "pve", vmid, {"tags": "infrahaus;ih-0123456789ab;web", "description": "first\nsecond"}, digest=config.digest
    )
    updated = await client.lxc.config("pve", vmid, current=True)
    assert updated.tags == ["ih-0123456789ab", "infrahaus", "web"]
    assert updated.description == "first\nsecond\n"
    with pytest.raises(ProxmoxError):
        await client.lxc.update_config("pve", vmid, {"description": "late"}, digest=config.digest)
    assert (await client.lxc.config("pve", vmid)).description == "first\nsecond\n"

    listed = {ct.vmid: ct for ct in await client.lxc.list("pve")}
    assert listed[vmid].status == "stopped"
    assert listed[vmid].name == "web-1"

    await client.tasks.wait(await client.lxc.start("pve", vmid), timeout=10, poll_interval=0.02)
    status = await client.lxc.status("pve", vmid)
    assert status.running
    assert status.maxmem == 1024 * 1024**2
    interfaces = {i.name: i for i in await client.lxc.interfaces("pve", vmid) or []}
    assert interfaces["eth0"].hwaddr.upper() == (net0.hwaddr or "").upper()
    assert interfaces["eth0"].inet

    await client.tasks.wait(await client.lxc.reboot("pve", vmid), timeout=10, poll_interval=0.02)
    assert (await client.lxc.status("pve", vmid)).running
    await client.tasks.wait(
        await client.lxc.shutdown("pve", vmid, timeout=30, force_stop=True), timeout=10, poll_interval=0.02
    )
    assert not (await client.lxc.status("pve", vmid)).running
    await client.tasks.wait(await client.lxc.start("pve", vmid), timeout=10, poll_interval=0.02)
    await client.tasks.wait(await client.lxc.stop("pve", vmid), timeout=10, poll_interval=0.02)
    assert (await client.lxc.status("pve", vmid)).status == "stopped"

    await client.tasks.wait(await client.lxc.delete("pve", vmid), timeout=10, poll_interval=0.02)
    with pytest.raises(ProxmoxNotFound):
        await client.lxc.config("pve", vmid)

    shutdown = next(r for r in sim_node.requests if r.path.endswith("/status/shutdown"))
    assert shutdown.params == {"timeout": "30", "forceStop": "1"}
    delete = next(r for r in sim_node.requests if r.method == "DELETE")
    assert delete.params == {"purge": "1", "destroy-unreferenced-disks": "1", "force": "0"}
    # Every one of these requests is checked against the schema when the fixture tears down.
    assert {(r.method, r.path.rsplit("/", 1)[-1]) for r in proxmox_contract.sent} >= {
        ("POST", "lxc"),
        ("DELETE", str(vmid)),
        ("POST", "shutdown"),
        ("GET", "status"),
    }
    created = next(r for r in sim_node.requests if r.method == "POST" and r.path.endswith("/lxc"))
    assert created.params["password"] == "********"
    assert created.params["ssh-public-keys"].startswith("ssh-ed25519 ")


async def test_lists_survive_odd_values(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    state = sim_node.state
    # Values a newer or odder Proxmox may send: an unknown state, a numeric name, numbers as strings.
    state.guests[300] = SimGuest(vmid=300, type="lxc", config={"hostname": "odd", "memory": "512", "cores": "1"})
    state.guests[301] = SimGuest(vmid=301, type="lxc", config={"hostname": "fine", "memory": "512"})
    cast(Any, state.guests[300]).status = "paused"
    cast(Any, state.guests[300].config)["hostname"] = 300
    cast(Any, state.guests[300]).lock = "migrate"
    cast(Any, state).cpus = "16"
    client = pve_client()
    cts = {ct.vmid: ct for ct in await client.lxc.list("pve")}
    assert cts[300].status == "paused"
    assert not cts[300].running
    assert cts[300].name == "300"
    assert cts[300].lock == "migrate"
    assert cts[300].template is False
    assert cts[301].status == "stopped"
    (node,) = await client.nodes.list()
    assert node.maxcpu == 16
    resources = {r.id: r for r in await client.cluster.resources(type="vm")}
    assert resources["lxc/300"].status == "paused"


async def test_pending_changes_and_current_config(pve_client: ClientFactory) -> None:
    client = pve_client()
    net = LxcNetwork(name="eth0", bridge="vmbr0", ip="dhcp")
    create = LxcCreate(vmid=140, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4", networks=[net], nameserver="1.1.1.1")
    await client.tasks.wait(await client.lxc.create("pve", create), timeout=10)
    await client.tasks.wait(await client.lxc.start("pve", 140), timeout=10)
    # A running container keeps a nameserver change pending until its next start (pve-container update_pct_config).
    await client.request("PUT", "/nodes/pve/lxc/140/config", {"nameserver": "9.9.9.9"})
    pending = {entry.key: entry for entry in await client.lxc.pending("pve", 140)}
    assert pending["nameserver"].waiting
    assert (pending["nameserver"].value, pending["nameserver"].pending) == ("1.1.1.1", "9.9.9.9")
    assert not pending["hostname"].waiting
    assert (await client.lxc.config("pve", 140)).raw["nameserver"] == "9.9.9.9"
    assert (await client.lxc.config("pve", 140, current=True)).raw["nameserver"] == "1.1.1.1"


async def test_permissions_of_a_named_token(pve_client: ClientFactory) -> None:
    client = pve_client()
    asked = await client.access.permissions("/vms/100", userid="infrahaus@pve!provisioner")
    assert asked["/vms/100"]["VM.Allocate"] is True
    assert "Sys.Modify" not in asked["/vms/100"]
