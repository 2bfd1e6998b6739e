"""Read endpoints of the simulated node over HTTPS (certificate pinned), with Proxmox's answer shapes."""

import httpx

from infrahaus_pvesim import RunningNode, Simulator


async def test_version(sim_http: httpx.AsyncClient) -> None:
    response = await sim_http.get("/version")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"data": {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}}


async def test_unknown_method_is_501_with_pve_reason(sim_http: httpx.AsyncClient) -> None:
    response = await sim_http.get("/nodes/pve/nothing")
    assert response.status_code == 501
    assert response.reason_phrase == "Method 'GET /nodes/pve/nothing' not implemented"
    assert response.json()["data"] is None


async def test_nodes_and_node_status(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    nodes = (await sim_http.get("/nodes")).json()["data"]
    assert [n["node"] for n in nodes] == ["pve"]
    assert nodes[0]["status"] == "online"
    assert nodes[0]["ssl_fingerprint"] == sim_node.fingerprint
    status = (await sim_http.get("/nodes/pve/status")).json()["data"]
    assert status["pveversion"].startswith("pve-manager/8.")
    assert status["kversion"].startswith("Linux ")
    assert status["memory"]["total"] == status["memory"]["used"] + status["memory"]["available"]
    assert 0 < status["memory"]["free"] < status["memory"]["available"]
    assert status["rootfs"]["total"] > status["rootfs"]["used"] > 0
    assert status["uptime"] >= 0


async def test_storages_with_content_filter(sim_http: httpx.AsyncClient) -> None:
    storages = (await sim_http.get("/nodes/pve/storage")).json()["data"]
    assert {s["storage"]: s["content"] for s in storages} == {
        "local": "backup,iso,vztmpl",
        "local-lvm": "images,rootdir",
    }
    rootdir = (await sim_http.get("/nodes/pve/storage", params={"content": "rootdir"})).json()["data"]
    assert [s["storage"] for s in rootdir] == ["local-lvm"]
    vztmpl = (await sim_http.get("/nodes/pve/storage", params={"content": "vztmpl"})).json()["data"]
    assert [s["storage"] for s in vztmpl] == ["local"]
    assert all(s["total"] == s["used"] + s["avail"] and s["active"] == 1 for s in storages)


async def test_storage_content(sim_http: httpx.AsyncClient) -> None:
    content = (await sim_http.get("/nodes/pve/storage/local/content", params={"content": "vztmpl"})).json()["data"]
    volids = [c["volid"] for c in content]
    assert "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst" in volids
    assert any(v.startswith("local:vztmpl/ubuntu-24.04-standard") for v in volids)
    assert {c["format"] for c in content} == {"tzst"}
    assert all(c["content"] == "vztmpl" and c["size"] > 0 for c in content)
    assert (await sim_http.get("/nodes/pve/storage/local/content", params={"content": "iso"})).json()["data"] == []
    missing = await sim_http.get("/nodes/pve/storage/nope/content")
    assert missing.status_code == 500
    assert missing.reason_phrase == "storage 'nope' does not exist"


async def test_network_with_type_filter(sim_http: httpx.AsyncClient) -> None:
    everything = (await sim_http.get("/nodes/pve/network")).json()["data"]
    assert {i["iface"] for i in everything} == {"eno1", "vmbr0"}
    bridges = (await sim_http.get("/nodes/pve/network", params={"type": "bridge"})).json()["data"]
    assert [(b["iface"], b["type"], b["active"]) for b in bridges] == [("vmbr0", "bridge", 1)]
    assert bridges[0]["cidr"] == "192.168.100.2/24"
    wrong = await sim_http.get("/nodes/pve/network", params={"type": "wifi"})
    assert wrong.status_code == 400
    assert "type" in wrong.json()["errors"]


async def test_cluster_resources_lists_lxc_and_qemu(simulator: Simulator, sim_http: httpx.AsyncClient) -> None:
    from infrahaus_pvesim.simulator import populate_node

    populate_node(simulator.node().state, simulator.config.templates, guests=8)
    everything = (await sim_http.get("/cluster/resources")).json()["data"]
    assert {r["type"] for r in everything} == {"node", "storage", "lxc", "qemu"}
    vms = (await sim_http.get("/cluster/resources", params={"type": "vm"})).json()["data"]
    assert len(vms) == 8
    assert {v["type"] for v in vms} == {"lxc", "qemu"}
    assert {v["status"] for v in vms} == {"running", "stopped"}
    first = next(v for v in vms if v["vmid"] == 100)
    assert first["id"] == "lxc/100"
    assert first["node"] == "pve"
    assert first["maxmem"] == 512 * 1024**2


async def test_nextid(sim_http: httpx.AsyncClient, simulator: Simulator) -> None:
    from infrahaus_pvesim.simulator import populate_node

    assert (await sim_http.get("/cluster/nextid")).json() == {"data": "100"}
    populate_node(simulator.node().state, simulator.config.templates, guests=3)
    assert (await sim_http.get("/cluster/nextid")).json() == {"data": "103"}
    assert (await sim_http.get("/cluster/nextid", params={"vmid": "150"})).json() == {"data": "150"}
    taken = await sim_http.get("/cluster/nextid", params={"vmid": "101"})
    assert taken.status_code == 400
    assert taken.reason_phrase == "Parameter verification failed."
    assert taken.json() == {
        "data": None,
        "message": "Parameter verification failed.\n",
        "errors": {"vmid": "VM 101 already exists"},
    }


async def test_json_bodies_are_accepted_like_forms(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    # pveproxy also takes application/json bodies; JSON booleans and numbers arrive as PVE values.
    response = await sim_http.post(
        "/nodes/pve/lxc",
        json={
            "vmid": 140,
            "ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "rootfs": "local-lvm:4",
            "unprivileged": True,
            "memory": 256,
        },
    )
    assert response.status_code == 200, response.reason_phrase
    assert sim_node.requests[-1].params["unprivileged"] == "1"
    assert sim_node.requests[-1].params["memory"] == "256"
    index = (await sim_http.get("/nodes/pve/lxc/140")).json()["data"]
    assert {"subdir": "config"} in index
    assert {"subdir": "interfaces"} in index
    broken = await sim_http.post("/nodes/pve/lxc", content=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400


async def test_cluster_status_of_a_standalone_node(sim_http: httpx.AsyncClient) -> None:
    status = (await sim_http.get("/cluster/status")).json()["data"]
    assert [(s["type"], s["name"], s["online"], s["local"]) for s in status] == [("node", "pve", 1, 1)]
    index = await sim_http.get("/nodes/pve/lxc/100/status")
    assert (index.status_code, index.reason_phrase) == (
        500,
        "Configuration file 'nodes/pve/lxc/100.conf' does not exist",
    )
