"""The real API process and real worker processes (`infrahaus api`, `infrahaus worker`) with PostgreSQL, Redis and
the simulator (served by this test's event loop) over real sockets.

Covers the wiring (Redis broker, namespace, actor names, the worker context middleware), crash safety (a worker
killed with SIGKILL mid-pipeline leaves an operation that the next worker resumes, and never a second container on
the node) and ownership: a guest made outside infrahaus (through the simulator's own API) is never touched.
"""

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrahaus_domain.crypto import format_key
from infrahaus_domain.settings import Settings
from infrahaus_pvesim import RunningNode, SimulatorConfig
from tests.fixtures.api import create_user_with_token
from tests.fixtures.dev import free_port
from tests.fixtures.nodes import node_body
from tests.fixtures.processes import Processes

pytestmark = pytest.mark.e2e

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TERMINAL = {"succeeded", "failed", "cancelled"}
DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
# Metrics off: not under test here, and their default port (9191, every address) would be shared by every run.
WORKER_ARGS = ("worker", "--processes", "1", "--threads", "2", "--metrics-port", "0")


@pytest.fixture
def process_env(settings: Settings) -> dict[str, str]:
    """Environment of the product processes: this test's database, Redis prefix and keys; short worker limits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    assert settings.redis.url is not None
    env.update(
        {
            "INFRAHAUS_DATABASE_URL": settings.database.url,
            "INFRAHAUS_REDIS_URL": settings.redis.url,
            "INFRAHAUS_OUTBOUND_ALLOW": ",".join(settings.outbound.allow),
            "INFRAHAUS_REDIS_PREFIX": settings.redis.prefix,
            "INFRAHAUS_ENCRYPTION_KEYS": ",".join(format_key(k) for k in settings.encryption.keys),
            "INFRAHAUS_TEMPLATES_DIR": str(TEMPLATES_DIR),
            "INFRAHAUS_COOKIE_SECURE": "false",
            "INFRAHAUS_LOG_FORMAT": "text",
            "INFRAHAUS_WORKER_CONCURRENCY": "2",
            # A killed worker's message comes back after 3 s; the reconciler waits longer than that before it
            # declares the operation lost, so the redelivered message gets to resume it.
            "INFRAHAUS_WORKER_BROKER_HEARTBEAT": "3",
            "INFRAHAUS_WORKER_HEARTBEAT_INTERVAL": "1",
            "INFRAHAUS_WORKER_HEARTBEAT_STALE": "45",
            "INFRAHAUS_WORKER_RECONCILE_INTERVAL": "2",
            "INFRAHAUS_WORKER_REQUEUE_AFTER": "20",
            "INFRAHAUS_WORKER_SCRIPT": "60",
        }
    )
    return env


@pytest.fixture
def processes(process_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(process_env, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
async def api(processes: Processes) -> str:
    """Base URL of a running `infrahaus api` process."""
    port = free_port()
    process = processes.start("api", "api", "--port", str(port), "--workers", "1")
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while True:
            assert process.poll() is None, processes.log("api")
            try:
                if (await http.get(f"{base_url}/health/live", timeout=1)).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, processes.log("api")
            await asyncio.sleep(0.2)
    return base_url


@pytest.fixture
async def http(
    api: str, settings: Settings, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """A bearer-token client of the API process, with the simulator's node registered and templates synced."""
    _, token = await create_user_with_token(settings, "e2e@pve")
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        response = await client.post("/api/nodes", json=node_body(sim_node, simulator_config))
        assert response.status_code == 201, response.text
        response = await client.post("/api/templates/discover")
        assert response.status_code in (200, 201), response.text
        yield client


async def template_id(http: httpx.AsyncClient, name: str) -> str:
    response = await http.get("/api/templates", params={"q": name})
    [item] = [t for t in response.json()["items"] if t["name"] == name]
    found: str = item["id"]
    return found


async def wait_operation(
    http: httpx.AsyncClient, op_id: str, *, until: set[str] | None = None, step: str | None = None, timeout: float = 90
) -> dict[str, Any]:
    """Poll the operation until it is terminal (or reaches `step`)."""
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = (await http.get(f"/api/operations/{op_id}")).json()
        if op["status"] in (until or TERMINAL) or (step is not None and op["step"] == step):
            return op
        assert time.monotonic() < deadline, op
        await asyncio.sleep(0.2)


def creates_sent(node: RunningNode, vmid: int) -> int:
    return sum(
        1 for r in node.requests if r.method == "POST" and r.path.endswith("/lxc") and r.params.get("vmid") == str(vmid)
    )


async def test_create_stop_delete_through_real_processes(
    http: httpx.AsyncClient, processes: Processes, sim_node: RunningNode
) -> None:
    processes.start("worker", *WORKER_ARGS)
    template = await template_id(http, "web-hello")
    response = await http.post("/api/containers", json={"hostname": "e2e-web", "template_id": template, "vmid": 150})
    assert response.status_code == 202, response.text
    container_id = response.json()["container"]["id"]
    op = await wait_operation(http, response.json()["operation"]["id"])
    assert op["status"] == "succeeded", (op, creates_sent(sim_node, 150), processes.log("worker")[-3000:])
    detail = (await http.get(f"/api/containers/{container_id}")).json()
    assert detail["lifecycle"] == "ready"

    response = await http.post(f"/api/containers/{container_id}/stop")
    assert response.status_code == 202, response.text
    op = await wait_operation(http, response.json()["id"])
    assert op["status"] == "succeeded", op
    assert sim_node.state.guests[150].status == "stopped"

    response = await http.delete(f"/api/containers/{container_id}")
    assert response.status_code == 202, response.text
    op = await wait_operation(http, response.json()["id"])
    assert op["status"] == "succeeded", op
    assert 150 not in sim_node.state.guests
    assert (await http.get(f"/api/containers/{container_id}")).status_code == 404


async def test_sigkilled_worker_never_leaves_a_running_operation(
    http: httpx.AsyncClient, processes: Processes, sim_node: RunningNode
) -> None:
    response = await http.post(
        "/api/templates",
        json={
            "name": "slow-e2e",
            "os_template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "scripts": [{"name": "10-slow", "content": 'log_info "start"\nsleep 4\nlog_info "end"\n', "position": 10}],
        },
    )
    assert response.status_code == 201, response.text
    response = await http.post(
        "/api/containers", json={"hostname": "e2e-kill", "template_id": response.json()["id"], "vmid": 151}
    )
    assert response.status_code == 202, response.text
    container_id = response.json()["container"]["id"]
    op_id = response.json()["operation"]["id"]

    processes.start("worker", *WORKER_ARGS)
    op = await wait_operation(http, op_id, step="scripts", timeout=120)
    assert op["status"] == "running", op
    processes.kill("worker")  # SIGKILL to the whole group: no cleanup runs
    assert (await http.get(f"/api/operations/{op_id}")).json()["status"] == "running"

    processes.start("worker", *WORKER_ARGS)
    op = await wait_operation(http, op_id, timeout=180)
    # Resumed by the new worker from its markers, not failed.
    assert op["status"] == "succeeded", op
    detail = (await http.get(f"/api/containers/{container_id}")).json()
    assert detail["lifecycle"] == "ready"
    assert creates_sent(sim_node, 151) == 1
    assert [vmid for vmid, g in sim_node.state.guests.items() if g.type == "lxc"] == [151]


def guest_state(node: RunningNode, vmid: int) -> tuple[str, dict[str, str], str | None]:
    guest = node.state.guests[vmid]
    return guest.status, dict(guest.config), guest.lock


def changes_to(node: RunningNode, vmid: int, since: int) -> list[tuple[str, str]]:
    """API requests after `since` that could change guest `vmid`."""
    return [(r.method, r.path) for r in node.requests[since:] if r.method != "GET" and f"/lxc/{vmid}" in r.path]


async def sim_call(sim_http: httpx.AsyncClient, method: str, path: str, **data: str) -> None:
    """A call to the simulator's own API (as a person or script beside infrahaus), waiting for its task if any."""
    response = await sim_http.request(method, path, data=data or None)
    assert response.status_code == 200, response.text
    upid = response.json()["data"]
    deadline = time.monotonic() + 30
    while isinstance(upid, str) and upid.startswith("UPID:"):
        status = (await sim_http.get(f"/nodes/pve/tasks/{upid}/status")).json()["data"]
        if status["status"] == "stopped":
            assert status["exitstatus"] == "OK", status
            return
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_a_guest_made_outside_infrahaus_is_never_touched(
    http: httpx.AsyncClient, processes: Processes, sim_node: RunningNode, sim_http: httpx.AsyncClient
) -> None:
    theirs = {"ostemplate": DEBIAN, "storage": "local-lvm", "description": "not infrahaus's"}
    node_id = (await http.get("/api/nodes")).json()["items"][0]["id"]
    # The VMID cache is warm before the guests below exist: only a live check can know them.
    assert (await http.get(f"/api/nodes/{node_id}/vmids/180")).json()["available"] is True
    await sim_call(sim_http, "POST", "/nodes/pve/lxc", vmid="180", hostname="theirs", **theirs)
    assert (await http.get(f"/api/nodes/{node_id}/vmids/180")).json()["available"] is True  # still the cache

    # 1. Creating on its VMID is refused before anything is queued.
    refused = await http.post("/api/containers", json={"hostname": "mine", "os_template": DEBIAN, "vmid": 180})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "vmid_taken"
    assert (await http.get("/api/operations")).json()["items"] == []

    # 2. The worker path: accepted while the VMID was free (no worker yet), then somebody makes the guest.
    accepted = await http.post("/api/containers", json={"hostname": "mine", "os_template": DEBIAN, "vmid": 181})
    assert accepted.status_code == 202, accepted.text
    container_id = accepted.json()["container"]["id"]
    await sim_call(sim_http, "POST", "/nodes/pve/lxc", vmid="181", hostname="theirs", **theirs)
    await sim_call(sim_http, "POST", "/nodes/pve/lxc/181/status/start")
    before = guest_state(sim_node, 181)
    since = len(sim_node.requests)
    processes.start("worker", *WORKER_ARGS)
    op = await wait_operation(http, accepted.json()["operation"]["id"])
    assert op["status"] == "failed", op
    assert op["error"]["code"] == "vmid_taken", op
    assert guest_state(sim_node, 181) == before
    # 3. Deleting the failed record leaves the guest as it is.
    delete = await http.delete(f"/api/containers/{container_id}")
    assert delete.status_code == 202, delete.text
    op = await wait_operation(http, delete.json()["id"])
    assert op["status"] == "succeeded", op
    assert (op["result"]["destroyed"], op["result"]["reason"]) == (False, "not_owned")
    assert (await http.get(f"/api/containers/{container_id}")).status_code == 404
    assert guest_state(sim_node, 181) == before
    assert changes_to(sim_node, 181, since) == []

    # 4. A guest of ours whose marker is removed, then changed, on the node: every action refuses it, untouched.
    created = await http.post("/api/containers", json={"hostname": "ours", "os_template": DEBIAN, "vmid": 182})
    assert created.status_code == 202, created.text
    ours = created.json()["container"]["id"]
    assert (await wait_operation(http, created.json()["operation"]["id"]))["status"] == "succeeded"
    other = "infrahaus-container: 01a2426d-d701-7018-bc17-000000000001"
    for tamper in ({"delete": "tags,description"}, {"description": other, "tags": "infrahaus;ih-000000000001"}):
        await sim_call(sim_http, "PUT", "/nodes/pve/lxc/182/config", **tamper)
        for power, actions in (("start", ("stop", "shutdown", "restart", "services/refresh")), ("stop", ("start",))):
            if sim_node.state.guests[182].status != ("running" if power == "start" else "stopped"):
                await sim_call(sim_http, "POST", f"/nodes/pve/lxc/182/status/{power}")
            for action in actions:
                before = guest_state(sim_node, 182)
                since = len(sim_node.requests)
                response = await http.post(f"/api/containers/{ours}/{action}")
                assert response.status_code == 202, (action, response.text)
                op = await wait_operation(http, response.json()["id"])
                assert (op["status"], op["error"]["code"]) == ("failed", "ownership_mismatch"), (action, op)
                assert guest_state(sim_node, 182) == before, action
                assert changes_to(sim_node, 182, since) == [], action
        detail = (await http.get(f"/api/containers/{ours}")).json()
        assert detail["last_error"]["code"] == "ownership_mismatch"
    before = guest_state(sim_node, 182)
    delete = await http.delete(f"/api/containers/{ours}")
    op = await wait_operation(http, delete.json()["id"])
    assert (op["result"]["destroyed"], op["result"]["reason"]) == (False, "not_owned")
    assert guest_state(sim_node, 182) == before
    processes.stop_all(signal.SIGKILL)  # a graceful stop is not what this test is about (and takes seconds)
