"""The LXC lifecycle: create, config, start, interfaces, shutdown/stop/reboot, delete; errors and locks."""

import asyncio
import time

import httpx

from infrahaus_proxmox.upid import parse_upid
from infrahaus_pvesim import RunningNode
from tests.integration.simulator.helpers import DEBIAN, create_ct, create_ct_ok, create_running, wait_task


async def test_create_runs_a_task_with_a_real_upid_and_log(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    upid = await create_ct(sim_http, 100, features="nesting=1", memory="1024", cores="2")
    parsed = parse_upid(upid)
    assert (parsed.node, parsed.type, parsed.id, parsed.user) == ("pve", "vzcreate", "100", "root@pam!infrahaus")
    # While the task runs the container is locked and listed.
    config = (await sim_http.get("/nodes/pve/lxc/100/config")).json()["data"]
    assert config["lock"] == "create"
    status = await wait_task(sim_http, upid)
    assert status["exitstatus"] == "OK"
    assert status["upid"] == upid
    assert (status["user"], status["tokenid"], status["type"]) == ("root@pam", "infrahaus", "vzcreate")
    log = (await sim_http.get(f"/nodes/pve/tasks/{upid}/log")).json()
    lines = [entry["t"] for entry in log["data"]]
    assert log["total"] == len(lines)
    assert [entry["n"] for entry in log["data"]] == list(range(1, len(lines) + 1))
    assert any(line.startswith("extracting archive '/var/lib/vz/template/cache/debian-12") for line in lines)
    assert lines[-1] == "TASK OK"
    page = (await sim_http.get(f"/nodes/pve/tasks/{upid}/log", params={"start": 2, "limit": 2})).json()
    assert [e["n"] for e in page["data"]] == [3, 4]
    assert page["total"] == len(lines)
    # The container tree exists for the SSH side.
    guest = sim_node.state.guests[100]
    assert guest.rootfs is not None
    assert (guest.rootfs / "etc" / "os-release").read_text().count("debian") >= 1


async def test_config_after_create_looks_like_pve(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_ct_ok(sim_http, 101, features="nesting=1", memory="1024", cores="2", tags="web")
    config = (await sim_http.get("/nodes/pve/lxc/101/config")).json()["data"]
    assert "lock" not in config
    assert config["hostname"] == "ct101"
    assert config["memory"] == 1024
    assert config["cores"] == 2
    assert config["ostype"] == "debian"
    assert config["arch"] == "amd64"
    assert config["unprivileged"] == 1
    assert config["features"] == "nesting=1"
    assert config["rootfs"] == "local-lvm:vm-101-disk-0,size=8G"
    assert config["net0"].startswith("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:")
    assert config["net0"].endswith(",ip=dhcp,type=veth")
    assert len(config["digest"]) == 40
    assert "password" not in config
    content = (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"]
    assert [(c["volid"], c["vmid"], c["size"]) for c in content] == [("local-lvm:vm-101-disk-0", 101, 8 * 1024**3)]
    listed = (await sim_http.get("/nodes/pve/lxc")).json()["data"]
    assert [(c["vmid"], c["name"], c["status"], c["type"]) for c in listed] == [(101, "ct101", "stopped", "lxc")]


async def test_start_interfaces_shutdown_stop_reboot(sim_http: httpx.AsyncClient) -> None:
    await create_ct_ok(sim_http, 102)
    # No container process, no interfaces: 200 with null (also for a VMID that does not exist).
    for vmid in (102, 999):
        stopped = await sim_http.get(f"/nodes/pve/lxc/{vmid}/interfaces")
        assert (stopped.status_code, stopped.json()) == (200, {"data": None})
    start = await sim_http.post("/nodes/pve/lxc/102/status/start")
    assert parse_upid(start.json()["data"]).type == "vzstart"
    assert (await wait_task(sim_http, start.json()["data"]))["exitstatus"] == "OK"
    current = (await sim_http.get("/nodes/pve/lxc/102/status/current")).json()["data"]
    assert current["status"] == "running"
    assert current["pid"] > 0
    again = await sim_http.post("/nodes/pve/lxc/102/status/start")
    assert (again.status_code, again.reason_phrase) == (500, "CT 102 already running")
    interfaces = (await sim_http.get("/nodes/pve/lxc/102/interfaces")).json()["data"]
    assert [i["name"] for i in interfaces] == ["lo", "eth0"]
    eth0 = interfaces[1]
    assert eth0["inet"].startswith("192.168.100.")
    assert eth0["inet"].endswith("/24")
    assert eth0["inet6"].startswith("fe80::")
    assert eth0["inet6"].endswith("/64")
    assert eth0["hwaddr"].startswith("bc:24:11:")
    assert eth0["hardware-address"] == eth0["hwaddr"]
    assert [(a["ip-address-type"], a["prefix"]) for a in eth0["ip-addresses"]] == [("inet", 24), ("inet6", 64)]
    assert eth0["ip-addresses"][0]["ip-address"] == eth0["inet"].split("/")[0]
    reboot = await sim_http.post("/nodes/pve/lxc/102/status/reboot")
    assert (await wait_task(sim_http, reboot.json()["data"]))["exitstatus"] == "OK"
    shutdown = await sim_http.post("/nodes/pve/lxc/102/status/shutdown", data={"timeout": "30", "forceStop": "1"})
    assert parse_upid(shutdown.json()["data"]).type == "vzshutdown"
    assert (await wait_task(sim_http, shutdown.json()["data"]))["exitstatus"] == "OK"
    current = (await sim_http.get("/nodes/pve/lxc/102/status/current")).json()["data"]
    assert (current["status"], current["uptime"]) == ("stopped", 0)
    stop = await sim_http.post("/nodes/pve/lxc/102/status/stop")
    assert (stop.status_code, stop.reason_phrase) == (500, "CT 102 not running")
    start = await sim_http.post("/nodes/pve/lxc/102/status/start")
    await wait_task(sim_http, start.json()["data"])
    stop = await sim_http.post("/nodes/pve/lxc/102/status/stop")
    assert (await wait_task(sim_http, stop.json()["data"]))["exitstatus"] == "OK"
    assert (await sim_http.get("/nodes/pve/lxc/102/status/current")).json()["data"]["status"] == "stopped"


async def test_create_with_start_forks_a_separate_start_task(sim_http: httpx.AsyncClient) -> None:
    await create_ct_ok(sim_http, 103, start="1")
    # The create task ends when it has forked the start; the start is a vzstart task of its own.
    started = await sim_http.get("/nodes/pve/tasks", params={"vmid": "103", "typefilter": "vzstart", "source": "all"})
    [start] = started.json()["data"]
    assert (await wait_task(sim_http, start["upid"]))["exitstatus"] == "OK"
    assert (await sim_http.get("/nodes/pve/lxc/103/status/current")).json()["data"]["status"] == "running"


async def test_delete_refuses_running_then_destroys(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_running(sim_http, 104)
    rootfs = sim_node.state.guests[104].rootfs
    assert rootfs is not None
    assert rootfs.exists()
    refused = await sim_http.delete("/nodes/pve/lxc/104")
    assert (refused.status_code, refused.reason_phrase) == (500, "unable to destroy CT 104 - container is running")
    delete = await sim_http.delete(
        "/nodes/pve/lxc/104", params={"purge": "1", "destroy-unreferenced-disks": "1", "force": "1"}
    )
    upid = delete.json()["data"]
    assert parse_upid(upid).type == "vzdestroy"
    assert (await wait_task(sim_http, upid))["exitstatus"] == "OK"
    gone = await sim_http.get("/nodes/pve/lxc/104/config")
    assert (gone.status_code, gone.reason_phrase) == (500, "Configuration file 'nodes/pve/lxc/104.conf' does not exist")
    assert not rootfs.exists()
    assert (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"] == []
    log = [e["t"] for e in (await sim_http.get(f"/nodes/pve/tasks/{upid}/log")).json()["data"]]
    assert 'Logical volume "vm-104-disk-0" successfully removed.' in " ".join(log)


async def test_create_existing_vmid_is_500(sim_http: httpx.AsyncClient) -> None:
    await create_ct_ok(sim_http, 105)
    response = await sim_http.post("/nodes/pve/lxc", data={"vmid": "105", "ostemplate": DEBIAN})
    assert response.status_code == 500
    assert response.reason_phrase == "CT 105 already exists on node 'pve'"
    assert response.reason_phrase.startswith("CT 105 already exists")
    assert response.json() == {"data": None, "message": "CT 105 already exists on node 'pve'\n"}


async def test_missing_template_fails_the_task_and_removes_the_ct(sim_http: httpx.AsyncClient) -> None:
    upid = await create_ct(sim_http, 106, ostemplate="local:vztmpl/nothing-here.tar.zst")
    status = await wait_task(sim_http, upid)
    # The call does not look for the file; the task finds it missing after allocating the disk, then frees it.
    assert status["exitstatus"] == "unable to create CT 106 - can't find file 'local:vztmpl/nothing-here.tar.zst'"
    assert (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"] == []
    log = [e["t"] for e in (await sim_http.get(f"/nodes/pve/tasks/{upid}/log")).json()["data"]]
    assert log[-1] == f"TASK ERROR: {status['exitstatus']}"
    missing = await sim_http.get("/nodes/pve/lxc/106/config")
    assert missing.status_code == 500


async def test_storage_problems_are_answered_in_the_call(sim_http: httpx.AsyncClient) -> None:
    base = {"vmid": "107", "ostemplate": DEBIAN}
    no_rootdir = await sim_http.post("/nodes/pve/lxc", data=base | {"rootfs": "local:8"})
    assert (no_rootdir.status_code, no_rootdir.reason_phrase) == (400, "Parameter verification failed.")
    assert no_rootdir.json()["errors"] == {"storage": "storage 'local' does not support container directories"}
    # An unknown storage is a plain 500, for the template's storage and for the target's.
    unknown = await sim_http.post("/nodes/pve/lxc", data={"vmid": "108", "ostemplate": "nas:vztmpl/x.tar.zst"})
    assert (unknown.status_code, unknown.reason_phrase) == (500, "storage 'nas' does not exist")
    target = await sim_http.post("/nodes/pve/lxc", data=base | {"rootfs": "fast-ssd:8"})
    assert (target.status_code, target.reason_phrase) == (500, "storage 'fast-ssd' does not exist")
    default = await sim_http.post("/nodes/pve/lxc", data=base)
    assert default.json()["errors"] == {"storage": "storage 'local' does not support container directories"}
    iso = await sim_http.post("/nodes/pve/lxc", data=base | {"ostemplate": "local:iso/x.iso", "rootfs": "local-lvm:8"})
    assert iso.reason_phrase == "unable to use volume local:iso/x.iso - content type needs to be 'vztmpl'"
    keys = await sim_http.post(
        "/nodes/pve/lxc", data=base | {"rootfs": "local-lvm:8", "ssh-public-keys": "ssh-ed25519 not-a-key"}
    )
    assert (keys.status_code, keys.reason_phrase) == (500, "SSH public key validation error")
    assert (await sim_http.get("/nodes/pve/lxc")).json()["data"] == []


async def test_while_creating_the_config_holds_only_the_lock(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    sim_node.tasks.duration = 0.5
    upid = await create_ct(sim_http, 109, tags="infrahaus")
    config = (await sim_http.get("/nodes/pve/lxc/109/config")).json()["data"]
    assert set(config) == {"lock", "digest"}
    assert config["lock"] == "create"
    # DELETE checks the lock in the call. PUT first waits for the file lock, which the create task holds for as
    # long as it runs, and gives up after the lock timeout.
    delete = await sim_http.delete("/nodes/pve/lxc/109")
    assert (delete.status_code, delete.reason_phrase) == (500, "CT is locked (create)")
    sim_node.tasks.lock_timeout = 0.1
    put = await sim_http.put("/nodes/pve/lxc/109/config", data={"memory": "1024"})
    assert (put.status_code, put.reason_phrase) == (
        500,
        "can't lock file '/run/lock/lxc/pve-config-109.lock' - got timeout",
    )
    sim_node.tasks.lock_timeout = 10.0
    listed = (await sim_http.get("/nodes/pve/lxc")).json()["data"]
    assert (listed[0]["lock"], listed[0]["name"]) == ("create", "CT109")
    start = await sim_http.post("/nodes/pve/lxc/109/status/start")
    assert start.status_code == 200
    assert (await wait_task(sim_http, upid))["exitstatus"] == "OK"
    assert (await wait_task(sim_http, start.json()["data"]))["exitstatus"] == "OK"
    assert (await sim_http.get("/nodes/pve/lxc/109/config")).json()["data"]["tags"] == "infrahaus"


async def test_operations_on_one_guest_are_serialised(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_running(sim_http, 110)
    sim_node.tasks.duration = 0.3
    started = time.monotonic()
    first = (await sim_http.post("/nodes/pve/lxc/110/status/reboot")).json()["data"]
    second = (await sim_http.post("/nodes/pve/lxc/110/status/reboot")).json()["data"]
    one, two = await asyncio.gather(wait_task(sim_http, first), wait_task(sim_http, second))
    assert one["exitstatus"] == two["exitstatus"] == "OK"
    # Run one after the other, the two tasks take at least twice the task duration.
    assert time.monotonic() - started >= 0.6


async def test_config_update_and_digest(sim_http: httpx.AsyncClient) -> None:
    await create_ct_ok(sim_http, 111, description="old")
    digest = (await sim_http.get("/nodes/pve/lxc/111/config")).json()["data"]["digest"]
    update = await sim_http.put(
        "/nodes/pve/lxc/111/config", data={"memory": "2048", "onboot": "1", "delete": "description", "digest": digest}
    )
    assert update.status_code == 200
    assert update.json() == {"data": None}
    config = (await sim_http.get("/nodes/pve/lxc/111/config")).json()["data"]
    assert (config["memory"], config["onboot"]) == (2048, 1)
    assert "description" not in config
    stale = await sim_http.put("/nodes/pve/lxc/111/config", data={"memory": "512", "digest": digest})
    assert stale.status_code == 500
    assert stale.reason_phrase.startswith("detected modified configuration")
    bad = await sim_http.put("/nodes/pve/lxc/111/config", data={"memory": "1"})
    assert bad.status_code == 400
    assert bad.json()["errors"] == {"memory": "value must have a minimum value of 16"}


async def test_missing_guest_and_qemu_guest_under_lxc(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    from infrahaus_pvesim.simulator import populate_node

    populate_node(sim_node.state, ("local:vztmpl/a.tar.zst",), guests=4)  # vmid 103 is a QEMU VM
    for path in ["/nodes/pve/lxc/103/status/current", "/nodes/pve/lxc/999/config"]:
        response = await sim_http.get(path)
        assert response.status_code == 500
        vmid = path.split("/")[4]
        assert response.reason_phrase == f"Configuration file 'nodes/pve/lxc/{vmid}.conf' does not exist"
    clash = await sim_http.post("/nodes/pve/lxc", data={"vmid": "103", "ostemplate": DEBIAN})
    assert clash.reason_phrase == "VM 103 already exists on node 'pve'"
    qemu = (await sim_http.get("/nodes/pve/qemu")).json()["data"]
    assert [q["vmid"] for q in qemu] == [103]


async def test_unknown_task_and_garbage_upid(sim_http: httpx.AsyncClient) -> None:
    garbage = await sim_http.get("/nodes/pve/tasks/not-a-upid/status")
    assert (garbage.status_code, garbage.reason_phrase) == (400, "Parameter verification failed.")
    assert garbage.json()["errors"] == {"upid": "unable to parse worker upid"}
    unknown_upid = "UPID:pve:00001234:00001234:65432100:vzstart:100:root@pam:"
    unknown = await sim_http.get(f"/nodes/pve/tasks/{unknown_upid}/status")
    assert (unknown.status_code, unknown.json()["errors"]) == (400, {"upid": "no such task"})
    # The log of a well-formed unknown UPID is no error at all.
    log = await sim_http.get(f"/nodes/pve/tasks/{unknown_upid}/log")
    assert (log.status_code, log.json()) == (
        200,
        {"data": [{"n": 1, "t": "unable to open file - No such file or directory"}], "total": 1},
    )


async def test_a_create_using_many_schema_options_is_accepted(
    sim_http: httpx.AsyncClient, sim_node: RunningNode
) -> None:
    params = {
        "arch": "amd64",
        "cores": "2",
        "cpulimit": "1.5",
        "cpuunits": "200",
        "memory": "2048",
        "swap": "256",
        "description": "made by a test",
        "tags": "infrahaus;web",
        "onboot": "1",
        "startup": "order=2,up=30",
        "nameserver": "1.1.1.1",
        "searchdomain": "example.com",
        "timezone": "Europe/Berlin",
        "tty": "2",
        "cmode": "tty",
        "console": "1",
        "net1": "name=eth1,bridge=vmbr0,ip=10.1.0.5/24,gw=10.1.0.1,tag=20,mtu=1400,firewall=1",
        "mp0": "local-lvm:2,mp=/srv/data,backup=1",
        "ssh-public-keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample test@infrahaus",
        "password": "s3cret-root",
    }
    await create_ct_ok(sim_http, 130, **params)
    config = (await sim_http.get("/nodes/pve/lxc/130/config")).json()["data"]
    assert config["mp0"] == "local-lvm:vm-130-disk-1,backup=1,mp=/srv/data,size=2G"
    assert config["rootfs"] == "local-lvm:vm-130-disk-0,size=8G"
    assert config["net1"].startswith("name=eth1,bridge=vmbr0,firewall=1,gw=10.1.0.1,hwaddr=BC:24:11:")
    assert (config["tags"], config["startup"], config["cpulimit"]) == ("infrahaus;web", "order=2,up=30", "1.5")
    assert "password" not in config
    assert "ssh-public-keys" not in config
    volumes = [c["volid"] for c in (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"]]
    assert volumes == ["local-lvm:vm-130-disk-0", "local-lvm:vm-130-disk-1"]
    rootfs = sim_node.state.guests[130].rootfs
    assert rootfs is not None
    keys = rootfs / "root" / ".ssh" / "authorized_keys"
    assert keys.read_text() == params["ssh-public-keys"] + "\n"
    assert keys.stat().st_mode & 0o777 == 0o600
    assert all(r.params.get("password") != "s3cret-root" for r in sim_node.requests)
    upid = (await sim_http.delete("/nodes/pve/lxc/130", params={"purge": "1"})).json()["data"]
    await wait_task(sim_http, upid)
    assert (await sim_http.get("/nodes/pve/storage/local-lvm/content")).json()["data"] == []


async def test_task_list_filters(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_ct_ok(sim_http, 131)
    await create_ct_ok(sim_http, 132)
    sim_node.faults.fail_next_task("something broke", vmid=131)
    failed = await sim_http.post("/nodes/pve/lxc/131/status/start")
    await wait_task(sim_http, failed.json()["data"])
    sim_node.tasks.duration = 1.0
    running = (await sim_http.post("/nodes/pve/lxc/132/status/start")).json()["data"]
    # By default only finished tasks (the archive), newest first, with `total`.
    archive = (await sim_http.get("/nodes/pve/tasks")).json()
    assert [(t["type"], t["id"], t["status"]) for t in archive["data"]] == [
        ("vzstart", "131", "something broke"),
        ("vzcreate", "132", "OK"),
        ("vzcreate", "131", "OK"),
    ]
    assert archive["total"] == 3
    every = (await sim_http.get("/nodes/pve/tasks", params={"source": "all"})).json()["data"]
    assert (every[0]["upid"], every[0]["status"]) == (running, "RUNNING")
    active = (await sim_http.get("/nodes/pve/tasks", params={"source": "active"})).json()["data"]
    assert [t["upid"] for t in active] == [running]
    only = (await sim_http.get("/nodes/pve/tasks", params={"vmid": "132"})).json()["data"]
    assert [t["id"] for t in only] == ["132"]
    errors = (await sim_http.get("/nodes/pve/tasks", params={"errors": "1"})).json()["data"]
    assert [t["status"] for t in errors] == ["something broke"]
    ok = (await sim_http.get("/nodes/pve/tasks", params={"statusfilter": "ok"})).json()["data"]
    assert {t["type"] for t in ok} == {"vzcreate"}
    page = (await sim_http.get("/nodes/pve/tasks", params={"start": "1", "limit": "1"})).json()
    assert ([t["id"] for t in page["data"]], page["total"]) == (["132"], 3)
    none = (await sim_http.get("/nodes/pve/tasks", params={"limit": "0"})).json()
    assert (none["data"], none["total"]) == ([], 3)
    assert (await sim_http.get("/nodes/pve/tasks", params={"typefilter": "vzstop"})).json()["data"] == []
