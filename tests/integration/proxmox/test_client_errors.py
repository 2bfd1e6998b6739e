"""Failure handling of ProxmoxClient against the simulator: retries, timeouts, typed errors."""

import asyncio
import socket
import time

import pytest

from infrahaus_proxmox import (
    LxcCreate,
    LxcNetwork,
    ProxmoxConflict,
    ProxmoxConnectTimeout,
    ProxmoxLocked,
    ProxmoxNotFound,
    ProxmoxProxyError,
    ProxmoxServerError,
    ProxmoxTaskFailed,
    ProxmoxTimeout,
    ProxmoxUnreachable,
    ProxmoxValidationError,
    TlsPolicy,
    fetch_certificate,
)
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.config import DEMO_OSTEMPLATE
from tests.fixtures.proxmox_client import ClientFactory, ContractRecorder


def _calls(sim_node: RunningNode, method: str, suffix: str) -> list[int]:
    return [r.status for r in sim_node.requests if r.method == method and r.path.endswith(suffix)]


async def _make_ct(pve_client: ClientFactory, vmid: int) -> None:
    client = pve_client()
    create = LxcCreate(vmid=vmid, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4", hostname=f"ct-{vmid}")
    await client.tasks.wait(await client.lxc.create("pve", create), timeout=10)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_closed_port(pve_client: ClientFactory) -> None:
    client = pve_client(base_url=f"https://127.0.0.1:{_closed_port()}", tls=TlsPolicy.insecure())
    with pytest.raises(ProxmoxUnreachable, match="cannot connect"):
        await client.nodes.list()
    pinned = pve_client(base_url=f"https://127.0.0.1:{_closed_port()}")
    with pytest.raises(ProxmoxUnreachable):
        await pinned.version()


async def test_silent_listener_is_a_connect_timeout(pve_client: ClientFactory) -> None:
    # A socket that listens but never accepts: TCP connects through the backlog, TLS never starts.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with pytest.raises(ProxmoxConnectTimeout):
            await fetch_certificate("127.0.0.1", port, timeout=0.2)
        client = pve_client(base_url=f"https://127.0.0.1:{port}", tls=TlsPolicy.insecure(), timeout=0.2, retries=1)
        started = time.monotonic()
        with pytest.raises(ProxmoxConnectTimeout) as caught:
            await client.version()
        # Nothing was sent, so even this is retried once: two connect timeouts.
        assert time.monotonic() - started >= 0.4
        assert isinstance(caught.value, ProxmoxUnreachable)
        assert isinstance(caught.value, ProxmoxTimeout)


async def test_unreachable_node_then_back(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client()
    await client.version()
    sim_node.faults.unreachable = True
    with pytest.raises(ProxmoxUnreachable):
        await client.version()
    sim_node.faults.unreachable = False
    assert (await client.version()).version


async def test_post_is_retried_when_the_connection_was_refused(
    pve_client: ClientFactory, sim_node: RunningNode
) -> None:
    await _make_ct(pve_client, 127)
    client = pve_client(retries=3, backoff=0.3)
    await client.version()
    sim_node.faults.unreachable = True
    # The node comes back while the client backs off: refused connects sent nothing, so the POST is retried.
    asyncio.get_running_loop().call_later(0.1, setattr, sim_node.faults, "unreachable", False)
    upid = await client.lxc.start("pve", 127)
    await client.tasks.wait(upid, timeout=10)
    assert _calls(sim_node, "POST", "/status/start") == [200]


async def test_read_timeout(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client(timeout=0.3, retries=0)
    sim_node.faults.latency = 1.0
    started = time.monotonic()
    with pytest.raises(ProxmoxTimeout) as caught:
        await client.nodes.list()
    assert time.monotonic() - started < 0.9
    assert not isinstance(caught.value, ProxmoxUnreachable)
    sim_node.faults.latency = 0.0
    assert [n.node for n in await client.nodes.list()] == ["pve"]


async def test_blackholed_node_times_out(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    # The blackhole completes the TLS handshake and then never answers.
    sim_node.faults.blackhole = True
    # Long enough that a slow TLS handshake on a loaded machine is not mistaken for the silence under test.
    client = pve_client(timeout=2.0, retries=0)
    with pytest.raises(ProxmoxTimeout, match="timed out waiting"):
        await client.version()
    sim_node.faults.blackhole = False


async def test_5xx_on_get_is_retried(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    sim_node.faults.fail_http(500, times=1, method="GET", path_contains="/nodes")
    nodes = await pve_client().nodes.list()
    assert [n.node for n in nodes] == ["pve"]
    assert _calls(sim_node, "GET", "/nodes") == [500, 200]


async def test_5xx_on_get_gives_up_after_retries(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    sim_node.faults.fail_http(503, times=5, method="GET", path_contains="/nodes")
    with pytest.raises(ProxmoxServerError, match="Service Unavailable") as caught:
        await pve_client(retries=2).nodes.list()
    assert caught.value.status == 503
    assert _calls(sim_node, "GET", "/nodes") == [503, 503, 503]


async def test_5xx_on_post_is_not_retried(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    await _make_ct(pve_client, 120)
    sim_node.faults.fail_http(500, times=1, method="POST", path_contains="/status/start")
    client = pve_client()
    with pytest.raises(ProxmoxServerError) as caught:
        await client.lxc.start("pve", 120)
    assert caught.value.status == 500
    assert _calls(sim_node, "POST", "/status/start") == [500]
    await client.tasks.wait(await client.lxc.start("pve", 120), timeout=10)
    assert _calls(sim_node, "POST", "/status/start") == [500, 200]


@pytest.mark.parametrize(
    ("status", "kind"), [(596, ProxmoxProxyError), (597, ProxmoxProxyError), (599, ProxmoxProxyError)]
)
async def test_proxy_errors_after_sending_are_never_retried(
    pve_client: ClientFactory, sim_node: RunningNode, status: int, kind: type[Exception]
) -> None:
    sim_node.faults.fail_http(status, times=1, method="GET", path_contains="/cluster/resources")
    with pytest.raises(kind):
        await pve_client(retries=3).cluster.resources()
    assert _calls(sim_node, "GET", "/cluster/resources") == [status]


async def test_595_is_retried_for_any_method_because_nothing_ran(
    pve_client: ClientFactory, sim_node: RunningNode
) -> None:
    await _make_ct(pve_client, 126)
    sim_node.faults.fail_http(595, times=1, method="POST", path_contains="/status/start")
    upid = await pve_client(retries=2).lxc.start("pve", 126)
    assert _calls(sim_node, "POST", "/status/start") == [595, 200]
    await pve_client().tasks.wait(upid, timeout=10)
    sim_node.faults.fail_http(595, times=5, method="GET", path_contains="/cluster/resources")
    with pytest.raises(ProxmoxUnreachable, match="Connection refused"):
        await pve_client(retries=1).cluster.resources()


async def test_failed_task_carries_exit_status_and_log_tail(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    await _make_ct(pve_client, 121)
    message = "startup for container '121' failed"
    sim_node.faults.fail_next_task(message, vmid=121)
    client = pve_client()
    upid = await client.lxc.start("pve", 121)
    with pytest.raises(ProxmoxTaskFailed) as caught:
        await client.tasks.wait(upid, timeout=10)
    assert caught.value.upid == upid
    assert caught.value.exitstatus == message
    assert caught.value.log_tail[-1] == f"TASK ERROR: {message}"
    assert (await client.lxc.status("pve", 121)).status == "stopped"


async def test_long_task_log_tail_is_the_end(pve_client: ClientFactory) -> None:
    client = pve_client()
    create = LxcCreate(vmid=122, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4", start=True)
    upid = await client.lxc.create("pve", create)
    await client.tasks.wait(upid, timeout=10)
    full = await client.tasks.log("pve", upid, limit=500)
    assert len(full) > 3
    assert full[-1] == "TASK OK"
    assert await client.tasks.log_tail("pve", upid, lines=2) == full[-2:]
    assert await client.tasks.log("pve", upid, limit=2) == full[:2]


async def test_task_wait_timeout(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    await _make_ct(pve_client, 123)
    sim_node.tasks.duration = 30.0
    client = pve_client()
    upid = await client.lxc.start("pve", 123)
    started = time.monotonic()
    with pytest.raises(ProxmoxTimeout, match="still running"):
        await client.tasks.wait(upid, timeout=0.5, poll_interval=0.05, max_interval=0.2)
    assert 0.5 <= time.monotonic() - started < 5
    polls = [r for r in sim_node.requests if r.path.endswith(f"/tasks/{upid}/status")]
    # Backoff: a few polls, growing from 0.05 s to 0.2 s, not a tight loop.
    assert 3 <= len(polls) <= 8


async def test_locked_container(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    await _make_ct(pve_client, 124)
    sim_node.faults.lock(124, kind="backup")
    client = pve_client()
    # A start is accepted; its task fails on the lock (pve-container Status.pm checks it in the worker).
    upid = await client.lxc.start("pve", 124)
    with pytest.raises(ProxmoxTaskFailed) as failed:
        await client.tasks.wait(upid, timeout=10)
    assert (failed.value.exitstatus, failed.value.locked, failed.value.killed) == ("CT is locked (backup)", True, False)
    # DELETE checks it in the call.
    with pytest.raises(ProxmoxLocked, match=r"CT is locked \(backup\)") as caught:
        await client.lxc.delete("pve", 124)
    assert caught.value.status == 500


async def test_unknown_task_is_not_found(pve_client: ClientFactory) -> None:
    client = pve_client()
    unknown = "UPID:pve:00001234:00001234:65432100:vzcreate:130:root@pam!infrahaus:"
    with pytest.raises(ProxmoxNotFound, match="no such task"):
        await client.tasks.status("pve", unknown)
    with pytest.raises(ProxmoxNotFound):
        await client.tasks.wait(unknown, timeout=5)


async def test_task_list_finds_the_create_task_of_a_vmid(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    await _make_ct(pve_client, 127)
    client = pve_client()
    sim_node.tasks.duration = 1.0
    await client.lxc.start("pve", 127)
    [create] = await client.tasks.list("pve", vmid=127, typefilter="vzcreate")
    assert (create.type, create.id, create.succeeded, create.authid) == ("vzcreate", "127", True, "root@pam!infrahaus")
    [start] = await client.tasks.list("pve", vmid=127, typefilter="vzstart", source="active")
    assert start.running
    assert not start.succeeded
    assert await client.tasks.list("pve", vmid=127, typefilter="vzstart", source="archive") == []


async def test_create_problems_answered_with_a_500_name_their_parameter(pve_client: ClientFactory) -> None:
    client = pve_client()
    unknown = LxcCreate(vmid=128, ostemplate=DEMO_OSTEMPLATE, rootfs="fast-ssd:4")
    with pytest.raises(ProxmoxValidationError) as storage:
        await client.lxc.create("pve", unknown)
    assert (storage.value.status, storage.value.errors) == (500, {"storage": "storage 'fast-ssd' does not exist"})
    keys = LxcCreate(vmid=128, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4", ssh_public_keys="ssh-rsa garbage")
    with pytest.raises(ProxmoxValidationError) as key:
        await client.lxc.create("pve", keys)
    assert key.value.errors == {"ssh-public-keys": "SSH public key validation error"}


async def test_interfaces_of_a_stopped_container_are_none(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client()
    net = LxcNetwork(name="eth0", bridge="vmbr0", ip="dhcp")
    create = LxcCreate(vmid=129, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4", networks=[net])
    await client.tasks.wait(await client.lxc.create("pve", create), timeout=10)
    assert await client.lxc.interfaces("pve", 129) is None
    assert await client.lxc.interfaces("pve", 999) is None
    await client.tasks.wait(await client.lxc.start("pve", 129), timeout=10)
    interfaces = await client.lxc.interfaces("pve", 129)
    assert interfaces is not None
    eth0 = next(i for i in interfaces if i.name == "eth0")
    assert [a.ip_address_type for a in eth0.addresses] == ["inet", "inet6"]
    assert eth0.inet is not None
    assert eth0.addresses[0].ip_address == eth0.inet.split("/")[0]


async def test_conflict_and_not_found(pve_client: ClientFactory) -> None:
    await _make_ct(pve_client, 125)
    client = pve_client()
    create = LxcCreate(vmid=125, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4")
    with pytest.raises(ProxmoxConflict, match="CT 125 already exists"):
        await client.lxc.create("pve", create)
    with pytest.raises(ProxmoxNotFound, match="does not exist"):
        await client.lxc.config("pve", 999)


async def test_validation_errors_per_field(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    # This request breaks the schema on purpose, so it is checked here and not by the fixture.
    recorder = ContractRecorder()
    client = pve_client(contract=False, event_hooks={"request": [recorder.hook]})
    create = LxcCreate(vmid=126, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4", cores=0)
    with pytest.raises(ProxmoxValidationError, match="Parameter verification failed") as caught:
        await client.lxc.create("pve", create)
    assert caught.value.errors == {"cores": "value must have a minimum value of 1"}
    assert recorder.violations() == ["POST /api2/json/nodes/pve/lxc: cores: value must have a minimum value of 1"]
    assert _calls(sim_node, "POST", "/lxc") == [400]
