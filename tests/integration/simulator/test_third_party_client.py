"""A third-party Proxmox client (proxmoxer, over requests) drives the simulator like a real node."""

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.config import DEMO_LEAST_TOKEN_ID, DEMO_LEAST_TOKEN_SECRET
from tests.integration.simulator.helpers import DEBIAN

T = TypeVar("T")


async def _call(fn: Callable[[], T]) -> T:
    # proxmoxer blocks; the simulator runs on this test's event loop.
    return await asyncio.to_thread(fn)


def _lifecycle(prox: ProxmoxAPI, vmid: int) -> dict[str, Any]:
    node = prox.nodes("pve")
    seen: dict[str, Any] = {"version": prox.version.get()}
    upid = node.lxc.create(
        vmid=vmid,
        ostemplate=DEBIAN,
        hostname=f"third-party-{vmid}",
        rootfs="local-lvm:4",
        memory=256,
        net0="name=eth0,bridge=vmbr0,ip=dhcp",
        unprivileged=1,
    )
    seen["create"] = Tasks.blocking_status(prox, upid, timeout=20, polling_interval=0.05)
    seen["start"] = Tasks.blocking_status(prox, node.lxc(vmid).status.start.post(), timeout=20, polling_interval=0.05)
    seen["running"] = node.lxc(vmid).status.current.get()["status"]
    seen["interfaces"] = node.lxc(vmid).interfaces.get()
    seen["stop"] = Tasks.blocking_status(prox, node.lxc(vmid).status.stop.post(), timeout=20, polling_interval=0.05)
    seen["delete"] = Tasks.blocking_status(prox, node.lxc(vmid).delete(purge=1), timeout=20, polling_interval=0.05)
    seen["log"] = Tasks.decode_log(node.tasks(seen["create"]["upid"]).log.get())
    seen["list"] = node.lxc.get()
    return seen


def _check(seen: dict[str, Any]) -> None:
    assert seen["version"]["version"].startswith("8.")
    for step in ("create", "start", "stop", "delete"):
        assert seen[step]["status"] == "stopped"
        assert seen[step]["exitstatus"] == "OK", step
    assert seen["running"] == "running"
    assert [i["name"] for i in seen["interfaces"]] == ["lo", "eth0"]
    assert "TASK OK" in seen["log"]
    assert seen["list"] == []


async def test_proxmoxer_with_password_login(sim_node: RunningNode) -> None:
    prox = await _call(
        lambda: ProxmoxAPI(
            f"127.0.0.1:{sim_node.api_port}",
            user="root@pam",
            password="demo",
            # The node certificate is signed by the simulator's cluster CA and names 127.0.0.1.
            verify_ssl=str(sim_node.certificate.ca_path),
            timeout=10,
        )
    )
    seen = await _call(lambda: _lifecycle(prox, 300))
    _check(seen)
    assert {r.auth for r in sim_node.requests if r.path != "/api2/json/access/ticket"} == {"ticket"}


async def test_proxmoxer_with_api_token(sim_node: RunningNode) -> None:
    prox = ProxmoxAPI(
        f"127.0.0.1:{sim_node.api_port}",
        user="root@pam",
        token_name="infrahaus",
        token_value="demo-token-secret",
        verify_ssl=str(sim_node.certificate.ca_path),
        timeout=10,
    )
    seen = await _call(lambda: _lifecycle(prox, 301))
    _check(seen)
    assert {r.auth for r in sim_node.requests} == {"token"}


async def test_proxmoxer_with_a_least_privilege_token(sim_node: RunningNode) -> None:
    user, _, name = DEMO_LEAST_TOKEN_ID.partition("!")
    prox = ProxmoxAPI(
        f"127.0.0.1:{sim_node.api_port}",
        user=user,
        token_name=name,
        token_value=DEMO_LEAST_TOKEN_SECRET,
        verify_ssl=str(sim_node.certificate.ca_path),
        timeout=10,
    )
    seen = await _call(lambda: _lifecycle(prox, 302))
    _check(seen)
    # The token sees exactly the demo role on the paths it was given, inherited below them.
    permissions = await _call(lambda: prox.access.permissions.get(path="/vms/302"))
    assert set(permissions["/vms/302"]) >= {"VM.Allocate", "VM.PowerMgmt", "VM.Audit"}
    assert "Sys.Modify" not in permissions["/vms/302"]
    with pytest.raises(ResourceException) as refused:
        await _call(lambda: prox.cluster.status.get())
    assert (refused.value.status_code, refused.value.content) == (403, "Permission check failed (/, Sys.Audit)")


async def test_proxmoxer_across_a_held_lock(sim_node: RunningNode) -> None:
    prox = ProxmoxAPI(
        f"127.0.0.1:{sim_node.api_port}",
        user="root@pam",
        token_name="infrahaus",
        token_value="demo-token-secret",
        verify_ssl=str(sim_node.certificate.ca_path),
        timeout=10,
    )
    node = prox.nodes("pve")

    def locked() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        upid = node.lxc.create(vmid=303, ostemplate=DEBIAN, rootfs="local-lvm:4", unprivileged=1)
        Tasks.blocking_status(prox, upid, timeout=20, polling_interval=0.05)
        node.lxc(303).config.put(lock="backup")
        # The call is accepted, the task fails on the lock.
        seen["locked"] = Tasks.blocking_status(
            prox, node.lxc(303).status.start.post(), timeout=20, polling_interval=0.05
        )
        try:
            node.lxc(303).delete()
        except ResourceException as exc:
            seen["delete"] = (exc.status_code, exc.content)
        return seen

    seen = await _call(locked)
    # What `pct unlock` does on the node.
    sim_node.faults.unlock(303)
    seen["after"] = await _call(
        lambda: Tasks.blocking_status(prox, node.lxc(303).status.start.post(), timeout=20, polling_interval=0.05)
    )
    assert seen["locked"]["exitstatus"] == "CT is locked (backup)"
    assert seen["delete"] == (500, "CT is locked (backup)")
    assert seen["after"]["exitstatus"] == "OK"


async def test_proxmoxer_sees_proxmox_errors(sim_node: RunningNode) -> None:
    prox = ProxmoxAPI(
        f"127.0.0.1:{sim_node.api_port}",
        user="root@pam",
        token_name="infrahaus",
        token_value="demo-token-secret",
        verify_ssl=str(sim_node.certificate.ca_path),
    )
    with pytest.raises(ResourceException) as missing:
        await _call(lambda: prox.nodes("pve").lxc(404).config.get())
    assert missing.value.status_code == 500
    assert missing.value.content == "Configuration file 'nodes/pve/lxc/404.conf' does not exist"
    with pytest.raises(ResourceException) as invalid:
        await _call(lambda: prox.nodes("pve").lxc.create(vmid=5, ostemplate=DEBIAN))
    assert invalid.value.status_code == 400
    assert invalid.value.errors == {"vmid": "value must have a minimum value of 100"}
