"""Injected faults: latency, unreachable, blackhole, HTTP failures (5xx, 595, 596), task failures, locks."""

import time

import httpx
import pytest

from infrahaus_pvesim import RunningNode
from tests.fixtures.simulator import pinned_context
from tests.integration.simulator.helpers import create_ct, create_ct_ok, create_running, wait_task


async def test_latency_delays_every_answer(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await sim_http.get("/version")
    sim_node.faults.latency = 0.5
    started = time.monotonic()
    assert (await sim_http.get("/version")).status_code == 200
    assert (await sim_http.get("/nodes/pve/lxc/999/config")).status_code == 500
    assert time.monotonic() - started >= 1.0
    sim_node.faults.latency = 0.0
    started = time.monotonic()
    await sim_http.get("/version")
    assert time.monotonic() - started < 0.5


async def test_unreachable_refuses_connections_then_recovers(sim_node: RunningNode) -> None:
    sim_node.faults.unreachable = True
    async with httpx.AsyncClient(verify=pinned_context(sim_node)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{sim_node.api_url}/api2/json/version")
    sim_node.faults.unreachable = False
    headers = {"Authorization": "PVEAPIToken=root@pam!infrahaus=demo-token-secret"}
    async with httpx.AsyncClient(verify=pinned_context(sim_node), headers=headers) as client:
        assert (await client.get(f"{sim_node.api_url}/api2/json/version")).status_code == 200


async def test_unreachable_drops_open_connections(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    assert (await sim_http.get("/version")).status_code == 200
    sim_node.faults.unreachable = True
    with pytest.raises(httpx.TransportError):
        await sim_http.get("/version")


async def test_blackhole_never_answers(sim_node: RunningNode) -> None:
    sim_node.faults.blackhole = True
    headers = {"Authorization": "PVEAPIToken=root@pam!infrahaus=demo-token-secret"}
    async with httpx.AsyncClient(verify=pinned_context(sim_node), headers=headers, timeout=0.5) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.get(f"{sim_node.api_url}/api2/json/version")
        sim_node.faults.blackhole = False
        assert (await client.get(f"{sim_node.api_url}/api2/json/version")).status_code == 200


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
        (595, "Connection refused"),
        (596, "Connection timed out"),
        (597, "Unexpected end-of-file"),
    ],
)
async def test_fail_http_answers_the_status(
    sim_http: httpx.AsyncClient, sim_node: RunningNode, status: int, reason: str
) -> None:
    sim_node.faults.fail_http(status, times=2, method="GET", path_contains="/nodes")
    assert (await sim_http.get("/version")).status_code == 200  # path does not match
    for _ in range(2):
        response = await sim_http.get("/nodes")
        assert (response.status_code, response.reason_phrase) == (status, reason)
        # The proxy's pseudo statuses come with an empty body, Proxmox's own errors with a JSON one.
        assert (response.content == b"") == (status >= 595)
    assert (await sim_http.get("/nodes")).status_code == 200
    assert [r.status for r in sim_node.requests[-4:]] == [200, status, status, 200]


async def test_fail_http_by_method_and_custom_reason(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    sim_node.faults.fail_http(500, method="POST", reason="got timeout")
    assert (await sim_http.get("/nodes")).status_code == 200
    response = await sim_http.post("/nodes/pve/lxc/100/status/start")
    assert (response.status_code, response.reason_phrase) == (500, "got timeout")


async def test_fail_next_task(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_ct_ok(sim_http, 100)
    sim_node.faults.fail_next_task("startup for container '100' failed", vmid=100)
    upid = (await sim_http.post("/nodes/pve/lxc/100/status/start")).json()["data"]
    status = await wait_task(sim_http, upid)
    assert status["exitstatus"] == "startup for container '100' failed"
    log = [e["t"] for e in (await sim_http.get(f"/nodes/pve/tasks/{upid}/log")).json()["data"]]
    assert log[-1] == "TASK ERROR: startup for container '100' failed"
    assert (await sim_http.get("/nodes/pve/lxc/100/status/current")).json()["data"]["status"] == "stopped"
    # Only the next task failed.
    upid = (await sim_http.post("/nodes/pve/lxc/100/status/start")).json()["data"]
    assert (await wait_task(sim_http, upid))["exitstatus"] == "OK"


async def test_failed_create_leaves_nothing_behind(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    sim_node.faults.fail_next_task("unable to create CT 101 - disk full")
    status = await wait_task(sim_http, await create_ct(sim_http, 101))
    assert status["exitstatus"] == "unable to create CT 101 - disk full"
    assert 101 not in sim_node.state.guests
    assert (await sim_http.get("/cluster/nextid")).json()["data"] == "100"


async def test_lock_and_timed_unlock(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_ct_ok(sim_http, 102)
    sim_node.faults.lock(102, "backup")
    # The start is accepted; its task fails on the lock.
    response = await sim_http.post("/nodes/pve/lxc/102/status/start")
    assert response.status_code == 200
    assert (await wait_task(sim_http, response.json()["data"]))["exitstatus"] == "CT is locked (backup)"
    assert (await sim_http.get("/nodes/pve/lxc/102/config")).json()["data"]["lock"] == "backup"
    sim_node.faults.unlock(102)
    start = await sim_http.post("/nodes/pve/lxc/102/status/start")
    assert (await wait_task(sim_http, start.json()["data"]))["exitstatus"] == "OK"
    sim_node.faults.lock(102, "snapshot", seconds=0.2)
    stop = await sim_http.post("/nodes/pve/lxc/102/status/stop")
    assert (await wait_task(sim_http, stop.json()["data"]))["exitstatus"] == "CT is locked (snapshot)"
    deadline = time.monotonic() + 5
    while sim_node.state.guests[102].lock is not None:
        assert time.monotonic() < deadline
        await sim_http.get("/version")
    assert "lock" not in (await sim_http.get("/nodes/pve/lxc/102/config")).json()["data"]


async def test_drop_ssh_after_is_exposed(sim_node: RunningNode) -> None:
    sim_node.faults.drop_ssh_after(0.5)
    assert sim_node.faults.ssh_drop_after == 0.5
    sim_node.faults.clear()
    assert sim_node.faults.ssh_drop_after is None


async def test_request_log_records_what_was_asked(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    sim_node.requests.clear()
    await sim_http.get("/nodes/pve/storage", params={"content": "vztmpl"})
    await sim_http.post("/nodes/pve/lxc", data={"vmid": "1"})
    first, second = sim_node.requests
    assert (first.method, first.path, first.params, first.status, first.auth) == (
        "GET",
        "/api2/json/nodes/pve/storage",
        {"content": "vztmpl"},
        200,
        "token",
    )
    assert (second.method, second.status, second.params) == ("POST", 400, {"vmid": "1"})


async def test_guest_ignoring_shutdown(sim_http: httpx.AsyncClient, sim_node: RunningNode) -> None:
    await create_running(sim_http, 103)
    sim_node.faults.ignore_shutdown(103)
    upid = (await sim_http.post("/nodes/pve/lxc/103/status/shutdown", data={"timeout": "0"})).json()["data"]
    # lxc-stop gives up after the timeout; PVE then waits another timeout + 5 s for the container to go.
    status = await wait_task(sim_http, upid, timeout=15)
    assert status["exitstatus"] == "container did not stop"
    log = [e["t"] for e in (await sim_http.get(f"/nodes/pve/tasks/{upid}/log")).json()["data"]]
    assert "command 'lxc-stop -n 103 --nokill --timeout 0' failed: exit code 1" in log
    assert (await sim_http.get("/nodes/pve/lxc/103/status/current")).json()["data"]["status"] == "running"
    forced = await sim_http.post("/nodes/pve/lxc/103/status/shutdown", data={"timeout": "0", "forceStop": "1"})
    assert (await wait_task(sim_http, forced.json()["data"]))["exitstatus"] == "OK"
    assert (await sim_http.get("/nodes/pve/lxc/103/status/current")).json()["data"]["status"] == "stopped"
