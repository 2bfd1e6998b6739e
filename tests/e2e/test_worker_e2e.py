"""The real API process and real worker processes (`infrahaus api`, `infrahaus worker`) with PostgreSQL, Redis and
the simulator (served by this test's event loop) over real sockets.

Covers the wiring (Redis broker, namespace, actor names, the worker context middleware) and crash safety: a worker
killed with SIGKILL mid-pipeline leaves an operation that, once a worker runs again, finishes or fails cleanly,
and never a second container on the node.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrahaus_domain.crypto import format_key
from infrahaus_domain.settings import Settings
from infrahaus_proxmox.simulator import RunningNode, SimulatorConfig
from tests.fixtures.api import create_user_with_token
from tests.fixtures.dev import free_port
from tests.fixtures.nodes import node_body

pytestmark = pytest.mark.e2e

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def process_env(settings: Settings) -> dict[str, str]:
    """Environment of the product processes: this test's database, Redis prefix and keys; short worker limits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    assert settings.redis_url is not None
    env.update(
        {
            "INFRAHAUS_DATABASE_URL": settings.database_url,
            "INFRAHAUS_REDIS_URL": settings.redis_url,
            "INFRAHAUS_REDIS_PREFIX": settings.redis_prefix,
            "INFRAHAUS_ENCRYPTION_KEYS": ",".join(format_key(k) for k in settings.encryption_keys),
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


class Processes:
    """Starts and stops product processes; each in its own process group so a kill takes its children too."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")  # a file, not a pipe nobody reads
        process = subprocess.Popen(
            [sys.executable, "-m", "infrahaus.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running[name] = process
        return process

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        process = self.running.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.running):
            self.kill(name, signal.SIGTERM)


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
    processes.start("worker", "worker", "--processes", "1", "--threads", "2")
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

    processes.start("worker", "worker", "--processes", "1", "--threads", "2")
    op = await wait_operation(http, op_id, step="scripts", timeout=120)
    assert op["status"] == "running", op
    processes.kill("worker")  # SIGKILL to the whole group: no cleanup runs
    assert (await http.get(f"/api/operations/{op_id}")).json()["status"] == "running"

    processes.start("worker", "worker", "--processes", "1", "--threads", "2")
    op = await wait_operation(http, op_id, timeout=180)
    assert op["status"] in ("succeeded", "failed"), op
    if op["status"] == "failed":
        assert op["error"]["code"] == "worker_lost", op
    detail = (await http.get(f"/api/containers/{container_id}")).json()
    assert detail["lifecycle"] == ("ready" if op["status"] == "succeeded" else "error")
    assert creates_sent(sim_node, 151) == 1
    assert [vmid for vmid, g in sim_node.state.guests.items() if g.type == "lxc"] == [151]
