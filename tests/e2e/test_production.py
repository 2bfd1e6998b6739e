"""The production shape end to end: `infrahaus migrate`, two `infrahaus api` processes and `infrahaus worker` against
PostgreSQL (a database of this module's own) and Redis, with the simulator served by the test's event loop.

Covers: a session opened on one API process works on the other (cookie and CSRF token), a creation sent to one and
followed over SSE on the other, `/metrics` of both kinds of process after it, JSON logs with ids and no secret,
`/health/ready` with the broker, and graceful shutdown: a worker drains on SIGTERM and hands back what it cannot
finish, which the next worker resumes; `infrahaus dev` stopped with Ctrl-C leaves no operation half-done.
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrahaus_api.auth import AUTH_CACHE_SECONDS, SESSION_COOKIE
from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_domain.nodes.list_cache import NODE_LIST_SECONDS
from infrahaus_pvesim import RunningNode, SimNodeConfig, SimToken, SimulatorConfig
from infrahaus_pvesim.config import DEMO_OSTEMPLATE, DEMO_TOKEN_ID
from tests.fixtures.dev import free_port
from tests.fixtures.nodes import node_body
from tests.fixtures.processes import Processes, wait_live
from tests.fixtures.services import pg_url_for, temporary_database

pytestmark = pytest.mark.e2e

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TERMINAL = {"succeeded", "failed", "cancelled"}
# Distinct secrets, so a leak cannot hide behind a common word.
LOGIN_PASSWORD = "login-Pw-4c1f9e"
TOKEN_SECRET = "token-Secret-8b2d71"
SSH_PASSWORD = "ssh-Pw-93e0aa"
SECRETS = (LOGIN_PASSWORD, TOKEN_SECRET, SSH_PASSWORD)
SLOW_SCRIPT = 'log_info "start"\nsleep 5\nlog_info "end"\n'


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve", ssh_users={"root": SSH_PASSWORD})],
        users={"root@pam": LOGIN_PASSWORD},
        tokens={DEMO_TOKEN_ID: SimToken(secret=TOKEN_SECRET, privsep=False)},
        task_duration=0.02,
    )


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL database created for this test (empty: `infrahaus migrate` builds the schema)."""
    with temporary_database("prod") as name:
        yield pg_url_for(name)


@pytest.fixture
def env(database_url: str, redis_url: str, redis_prefix: str, sim_node: RunningNode) -> dict[str, str]:
    """The product processes' environment: JSON logs, the simulator as login server, short worker limits."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRAHAUS_", "PROMETHEUS_"))}
    environ.update(
        {
            "INFRAHAUS_DATABASE_URL": database_url,
            "INFRAHAUS_REDIS_URL": redis_url,
            "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
            "INFRAHAUS_REDIS_PREFIX": f"{redis_prefix}{uuid.uuid4().hex[:8]}:",
            "INFRAHAUS_ENCRYPTION_KEYS": format_key(generate_key("prod1")),
            "INFRAHAUS_AUTH_SERVERS": json.dumps(
                [{"name": "pve", "url": sim_node.api_url, "fingerprint": sim_node.fingerprint}]
            ),
            "INFRAHAUS_TEMPLATES_DIR": str(TEMPLATES_DIR),
            "INFRAHAUS_COOKIE_SECURE": "false",
            "INFRAHAUS_LOG_FORMAT": "json",
            "INFRAHAUS_WORKER_HEARTBEAT_INTERVAL": "1",
            "INFRAHAUS_WORKER_BROKER_HEARTBEAT": "3",
            "INFRAHAUS_WORKER_RECONCILE_INTERVAL": "2",
            "INFRAHAUS_WORKER_HEARTBEAT_STALE": "45",
            "INFRAHAUS_WORKER_REQUEUE_AFTER": "20",
        }
    )
    return environ


@pytest.fixture
def processes(env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    migrate = subprocess.run(
        [sys.executable, "-m", "infrahaus.cli", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    procs = Processes(env, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def start_api(processes: Processes, name: str, *extra: str, workers: int) -> tuple[str, Coroutine[Any, Any, None]]:
    """Start `infrahaus api`; returns its base URL and a coroutine that waits until it is ready."""
    port = free_port()
    process = processes.start(name, "api", "--port", str(port), "--workers", str(workers), *extra)
    base_url = f"http://127.0.0.1:{port}"
    return base_url, wait_live(f"{base_url}/health/ready", process, what=name, timeout=120)


def start_worker(processes: Processes, *extra: str, count: int = 2) -> tuple[str, Coroutine[Any, Any, None]]:
    """Start `infrahaus worker`; returns its metrics URL and a coroutine that waits until it answers."""
    port = free_port()
    process = processes.start(
        "worker", "worker", "--processes", str(count), "--threads", "2", "--metrics-port", str(port), *extra
    )
    url = f"http://127.0.0.1:{port}/metrics"
    return url, wait_live(url, process, what="worker metrics", timeout=120)


async def login(http: httpx.AsyncClient) -> str:
    """Log in with the simulator's user; returns the CSRF token (the session cookie stays in `http`)."""
    response = await http.post("/api/auth/login", json={"username": "root@pam", "password": LOGIN_PASSWORD})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


async def wait_operation(
    http: httpx.AsyncClient, op_id: str, *, step: str | None = None, timeout: float = 90
) -> dict[str, Any]:
    """Poll the operation until it is terminal (or reaches `step`)."""
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = (await http.get(f"/api/operations/{op_id}")).json()
        if op["status"] in TERMINAL or (step is not None and op["step"] == step):
            return op
        assert time.monotonic() < deadline, op
        await asyncio.sleep(0.2)


async def sse_events(http: httpx.AsyncClient, path: str, *, timeout: float = 90) -> list[tuple[str, str]]:
    """(type, data) pairs of an SSE stream (every item's `type` is in its JSON data), read until `done`."""
    events: list[tuple[str, str]] = []
    async with asyncio.timeout(timeout), http.stream("GET", path, timeout=None) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data = line.partition(":")[2].strip()
                kind = json.loads(data)["type"]
                events.append((kind, data))
                if kind == "done":
                    return events
    raise AssertionError(f"the stream ended without a done event: {events}")


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample whose labels include `labels`, or None."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def json_lines(log: str, what: str) -> list[dict[str, Any]]:
    """Every non-empty line of a process's output, each parsed as one JSON object (fails on any other line)."""
    records = []
    for line in log.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"{what}: not a JSON log line: {line!r}") from None
    return records


async def template_id(http: httpx.AsyncClient, name: str) -> str:
    response = await http.get("/api/templates", params={"q": name})
    [found] = [t["id"] for t in response.json()["items"] if t["name"] == name]
    return str(found)


async def test_two_api_processes_and_a_worker(
    processes: Processes, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> None:
    # Started together: each boots while the others do.
    api1_metrics_port = free_port()
    api1, api1_ready = start_api(processes, "api1", "--metrics-port", str(api1_metrics_port), workers=2)
    api2, api2_ready = start_api(processes, "api2", workers=1)
    worker_metrics, worker_ready = start_worker(processes)
    await asyncio.gather(api1_ready, api2_ready, worker_ready)

    async with httpx.AsyncClient(base_url=api1, timeout=30) as one:
        ready = (await one.get("/health/ready")).json()
        assert ready["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}
        csrf = await login(one)
        # The same session cookie and CSRF token on the other process: reads and writes work there too.
        async with httpx.AsyncClient(
            base_url=api2, timeout=30, cookies=one.cookies, headers={"X-CSRF-Token": csrf}
        ) as two:
            me = await two.get("/api/auth/me")
            assert me.status_code == 200, me.text
            assert me.json()["user"]["userid"] == "root@pam"
            node = await two.post("/api/nodes", json=node_body(sim_node, simulator_config))
            assert node.status_code == 201, node.text

            one.headers["X-CSRF-Token"] = csrf
            synced = await one.post("/api/templates/discover")
            assert synced.status_code in (200, 201), synced.text
            created = await one.post(
                "/api/containers",
                json={"hostname": "prod-web", "template_id": await template_id(one, "web-hello"), "vmid": 170},
            )
            assert created.status_code == 202, created.text
            container_id = created.json()["container"]["id"]
            op_id = created.json()["operation"]["id"]

            events = await sse_events(two, f"/api/containers/{container_id}/progress")
            assert events[-1][0] == "done"
            assert json.loads(events[-1][1]) == {"type": "done", "operation_id": op_id, "status": "succeeded"}
            assert "step" in {event for event, _ in events}
            op = (await two.get(f"/api/operations/{op_id}")).json()
            assert op["status"] == "succeeded", op
            assert (await one.get(f"/api/containers/{container_id}")).json()["lifecycle"] == "ready"

            # SIGTERM drains: a request in flight (a node test making several slow Proxmox calls) still gets
            # its answer, then the process ends.
            sim_node.faults.latency = 1.0
            answered = len(sim_node.requests)
            slow = asyncio.create_task(two.post(f"/api/nodes/{node.json()['id']}/test"))
            deadline = time.monotonic() + 30
            while len(sim_node.requests) == answered:  # its first Proxmox call came back: the request is in flight
                assert time.monotonic() < deadline
                assert not slow.done()
                await asyncio.sleep(0.05)
            api2_process = processes.running.pop("api2")
            api2_process.send_signal(signal.SIGTERM)
            tested = await slow
            assert tested.status_code == 200, tested.text
            assert tested.json()["api"]["ok"] is True
            await asyncio.wait_for(asyncio.to_thread(api2_process.wait), timeout=30)
            # uvicorn re-raises the signal once it has shut down: ending "by SIGTERM" is its clean exit.
            assert api2_process.returncode in (0, -signal.SIGTERM)
            sim_node.faults.latency = 0.0

        # The live inventory asks the node: a Proxmox call from an API process.
        assert (await one.get("/api/containers")).status_code == 200
        # Without INFRAHAUS_METRICS_TOKEN the API port does not serve metrics; the metrics port does.
        assert (await one.get("/metrics")).status_code == 404
        api_metrics = (await one.get(f"http://127.0.0.1:{api1_metrics_port}/metrics")).text
    assert sample(api_metrics, "infrahaus_http_request_duration_seconds_count", method="POST", route="/api/containers")
    assert sample(api_metrics, "infrahaus_http_requests_total", route="/api/auth/login", status="200") == 1
    assert sample(api_metrics, "infrahaus_proxmox_request_duration_seconds_count", method="GET", status="200")

    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(worker_metrics)).text
    assert sample(metrics, "infrahaus_operations_total", kind="create", outcome="succeeded") == 1
    assert sample(metrics, "infrahaus_operation_duration_seconds_count", kind="create", outcome="succeeded") == 1
    assert sample(
        metrics, "infrahaus_proxmox_request_duration_seconds_count", method="POST", endpoint="/nodes/{node}/lxc"
    )
    assert sample(metrics, "infrahaus_queue_depth", queue="containers") == 0

    # Graceful stop, then every line each process wrote must be JSON, carry its ids and no secret.
    for name in ("api1", "worker"):
        processes.kill(name, signal.SIGTERM)
    for name in ("api1", "api2", "worker"):
        log = processes.log(name)
        for secret in SECRETS:
            assert secret not in log, f"{name} logged a secret"
        records = json_lines(log, name)
        if name.startswith("api"):
            access = [r for r in records if r["logger"] == "infrahaus.api.access"]
            assert access, name
            assert all(re.fullmatch(r"[0-9a-f]{32}", r["request_id"]) for r in access), name
    worker_records = json_lines(processes.log("worker"), "worker")
    runs = [r for r in worker_records if r.get("actor") == "container.create"]
    assert runs, "no log line of the creation actor"
    assert all(r["operation_id"] == op_id for r in runs)


async def create_slow(http: httpx.AsyncClient, vmid: int) -> tuple[str, str]:
    """A container whose creation spends a few seconds in its `scripts` step; (container id, operation id)."""
    response = await http.post(
        "/api/templates",
        json={
            "name": f"slow-{vmid}",
            "os_template": DEMO_OSTEMPLATE,
            "scripts": [{"name": "10-slow", "content": SLOW_SCRIPT, "position": 10}],
        },
    )
    assert response.status_code == 201, response.text
    response = await http.post(
        "/api/containers", json={"hostname": f"slow-{vmid}", "template_id": response.json()["id"], "vmid": vmid}
    )
    assert response.status_code == 202, response.text
    return response.json()["container"]["id"], response.json()["operation"]["id"]


@pytest.fixture
async def session(
    processes: Processes, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """A logged-in client of one `infrahaus api` process, with the simulator's node registered."""
    api, ready = start_api(processes, "api", workers=1)
    await ready
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        http.headers["X-CSRF-Token"] = await login(http)
        response = await http.post("/api/nodes", json=node_body(sim_node, simulator_config))
        assert response.status_code == 201, response.text
        yield http


async def test_worker_drains_on_sigterm_and_hands_back_the_rest(
    session: httpx.AsyncClient, processes: Processes, sim_node: RunningNode
) -> None:
    # Enough drain time: the running creation finishes before the process leaves.
    await start_worker(processes, "--drain-timeout", "30", count=1)[1]
    container_id, op_id = await create_slow(session, 171)
    await wait_operation(session, op_id, step="scripts")
    worker = processes.running.pop("worker")
    worker.send_signal(signal.SIGTERM)  # what systemd and Kubernetes send to the main process
    await asyncio.wait_for(asyncio.to_thread(worker.wait), timeout=30)
    assert worker.returncode == 0
    op = (await session.get(f"/api/operations/{op_id}")).json()
    assert op["status"] == "succeeded", (op, processes.log("worker")[-3000:])
    assert (await session.get(f"/api/containers/{container_id}")).json()["lifecycle"] == "ready"
    assert "handing back message" not in processes.log("worker")

    # Too little drain time: the creation is handed back, neither failed nor half-done, and the next worker
    # resumes it.
    await start_worker(processes, "--drain-timeout", "1", count=1)[1]
    container_id, op_id = await create_slow(session, 172)
    await wait_operation(session, op_id, step="scripts")
    worker = processes.running.pop("worker")
    worker.send_signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.to_thread(worker.wait), timeout=30)
    assert "handing back message" in processes.log("worker"), processes.log("worker")[-3000:]
    op = (await session.get(f"/api/operations/{op_id}")).json()
    assert op["status"] == "running", op

    await start_worker(processes, count=1)[1]
    op = await wait_operation(session, op_id, timeout=120)
    assert op["status"] == "succeeded", (op, processes.log("worker")[-3000:])
    assert (await session.get(f"/api/containers/{container_id}")).json()["lifecycle"] == "ready"
    creates = [r.params.get("vmid") for r in sim_node.requests if r.method == "POST" and r.path.endswith("/lxc")]
    assert creates == ["171", "172"]


def spawn_dev(data_dir: Path, log_path: Path, ports: tuple[int, int, int]) -> "subprocess.Popen[bytes]":
    port, sim_api_port, sim_ssh_port = ports
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable, "-m", "infrahaus.cli", "dev", "--demo",
                "--port", str(port),
                "--data-dir", str(data_dir),
                "--sim-api-port", str(sim_api_port),
                "--sim-ssh-port", str(sim_ssh_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


async def test_dev_ctrl_c_leaves_no_operation_half_done(tmp_path: Path) -> None:
    ports = (free_port(), free_port(), free_port())
    data_dir, log_path = tmp_path / "data", tmp_path / "dev.log"
    base_url = f"http://127.0.0.1:{ports[0]}"
    dev = spawn_dev(data_dir, log_path, ports)
    try:
        await wait_live(f"{base_url}/health/ready", dev, what="infrahaus dev", timeout=120)
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            response = await http.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
            assert response.status_code == 200, response.text
            http.headers["X-CSRF-Token"] = response.json()["csrf_token"]
            probe = await http.post("/api/nodes/probe", json={"host": "127.0.0.1", "port": ports[1]})
            node = await http.post(
                "/api/nodes",
                json={
                    "name": "demo",
                    "host": "127.0.0.1",
                    "port": ports[1],
                    "token_id": DEMO_TOKEN_ID,
                    "token_secret": "demo-token-secret",
                    "tls_fingerprint": probe.json()["fingerprint_sha256"],
                    "ssh_port": ports[2],
                    "ssh_password": "demo",
                },
            )
            assert node.status_code == 201, node.text
            _, op_id = await create_slow(http, 180)
            op = await wait_operation(http, op_id, step="scripts")
            assert op["status"] == "running", op
        dev.send_signal(signal.SIGINT)  # Ctrl-C
        await asyncio.wait_for(asyncio.to_thread(dev.wait), timeout=60)
        assert dev.returncode == 0, log_path.read_text()[-3000:]
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()

    # Started again on the same data: the operation is terminal (it finished before the process left).
    dev = spawn_dev(data_dir, log_path, ports)
    try:
        await wait_live(f"{base_url}/health/ready", dev, what="infrahaus dev (restart)", timeout=120)
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            response = await http.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
            assert response.status_code == 200, response.text
            op = (await http.get(f"/api/operations/{op_id}")).json()
            assert op["status"] == "succeeded", op
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()


async def _refused_within(http: httpx.AsyncClient, headers: dict[str, str], bound: float) -> float:
    """Seconds until `GET /api/nodes` with `headers` answers 401 (fails when that takes `bound` or longer)."""
    started = time.monotonic()
    while (response := await http.get("/api/nodes", headers=headers)).status_code != 401:
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < bound, f"still accepted after {bound:g} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_logout_and_token_revocation_reach_every_api_process(processes: Processes) -> None:
    """Each API process keeps a verified session or token in memory for AUTH_CACHE_SECONDS (no round trip per
    request); a logout or a revocation on one process is refused by the other at once (pub/sub), well before that
    bound could have ended it."""
    api1, api1_ready = start_api(processes, "api1", workers=1)
    api2, api2_ready = start_api(processes, "api2", workers=1)
    await asyncio.gather(api1_ready, api2_ready)
    async with httpx.AsyncClient(base_url=api1, timeout=30) as one, httpx.AsyncClient(base_url=api2, timeout=30) as two:
        csrf = await login(one)
        session = {"Cookie": f"{SESSION_COOKIE}={one.cookies[SESSION_COOKIE]}"}
        created = await one.post("/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201, created.text
        bearer = {"Authorization": f"Bearer {created.json()['token']}"}
        for http in (one, two):  # both processes verify both, and now serve them from memory
            for headers in (session, bearer):
                for _ in range(3):
                    assert (await http.get("/api/nodes", headers=headers)).status_code == 200

        revoked = await one.delete(f"/api/auth/tokens/{created.json()['id']}", headers={"X-CSRF-Token": csrf})
        assert revoked.status_code == 204, revoked.text
        assert (await one.get("/api/nodes", headers=bearer)).status_code == 401
        await _refused_within(two, bearer, AUTH_CACHE_SECONDS / 2)

        logged_out = await one.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert logged_out.status_code == 204, logged_out.text
        assert (await one.get("/api/nodes", headers=session)).status_code == 401
        await _refused_within(two, session, AUTH_CACHE_SECONDS / 2)


async def test_a_node_list_change_reaches_every_api_process(
    processes: Processes, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> None:
    """Each API process keeps every user's node list in memory (no round trip per read); a change committed by
    another API process or by the worker — a node registered or renamed, a container created or deleted, which
    changes the list's counts — is shown by every process within milliseconds (pub/sub), well before the bound."""
    api1, api1_ready = start_api(processes, "api1", workers=1)
    api2, api2_ready = start_api(processes, "api2", workers=1)
    await asyncio.gather(api1_ready, api2_ready, start_worker(processes, count=1)[1])
    async with httpx.AsyncClient(base_url=api1, timeout=30) as one:
        one.headers["X-CSRF-Token"] = await login(one)
        async with httpx.AsyncClient(base_url=api2, timeout=30, cookies=one.cookies, headers=one.headers) as two:

            async def listed(http: httpx.AsyncClient) -> list[tuple[str, int]]:
                response = await http.get("/api/nodes")
                assert response.status_code == 200, response.text
                return [(n["name"], n["container_count"]) for n in response.json()["items"]]

            async def shown_within(http: httpx.AsyncClient, expected: list[tuple[str, int]]) -> None:
                started = time.monotonic()
                while (seen := await listed(http)) != expected:
                    assert time.monotonic() - started < NODE_LIST_SECONDS / 2, seen
                    await asyncio.sleep(0.02)

            for http in (one, two):  # both processes keep the (empty) list
                assert await listed(http) == []
            registered = await one.post("/api/nodes", json=node_body(sim_node, simulator_config))
            assert registered.status_code == 201, registered.text
            node = registered.json()
            await shown_within(two, [(node["name"], 0)])

            renamed = await two.patch(f"/api/nodes/{node['id']}", json={"name": "renamed"})
            assert renamed.status_code == 200, renamed.text
            await shown_within(one, [("renamed", 0)])

            created = await two.post(
                "/api/containers", json={"hostname": "counted", "os_template": DEMO_OSTEMPLATE, "vmid": 176}
            )
            assert created.status_code == 202, created.text
            await shown_within(one, [("renamed", 1)])
            assert (await wait_operation(one, created.json()["operation"]["id"]))["status"] == "succeeded"

            for http in (one, two):
                assert await listed(http) == [("renamed", 1)]
            deleted = await one.delete(f"/api/containers/{created.json()['container']['id']}")
            assert deleted.status_code == 202, deleted.text
            assert (await wait_operation(one, deleted.json()["id"]))["status"] == "succeeded"
            # The worker removed the record: both API processes show it at once.
            await shown_within(one, [("renamed", 0)])
            await shown_within(two, [("renamed", 0)])
    processes.stop_all(signal.SIGKILL)  # a graceful stop is not what this test is about


async def test_uvicorns_own_lines_are_redacted_json_without_tracebacks(processes: Processes) -> None:
    """What uvicorn itself logs (its supervisor, a bind failure, a request it cannot parse) goes through the product's
    format: one JSON object per line, an exception's type instead of its traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = processes.start("busy", "api", "--port", str(taken.getsockname()[1]), "--workers", "2")
        await asyncio.wait_for(asyncio.to_thread(busy.wait), timeout=90)
    processes.running.pop("busy")
    assert busy.returncode != 0
    bind_log = processes.log("busy")
    assert "Traceback" not in bind_log
    bind_records = json_lines(bind_log, "busy")
    assert any(r["logger"].startswith("uvicorn") and r["level"] == "error" for r in bind_records), bind_records

    base_url, ready = start_api(processes, "garbled", workers=2)
    await ready
    port = int(base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01 Authorization: Bearer ihs_0123456789abcdef_leaked\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()
    deadline = time.monotonic() + 30
    while "Invalid HTTP request" not in processes.log("garbled"):
        assert time.monotonic() < deadline, processes.log("garbled")
        await asyncio.sleep(0.2)
    garbled_log = processes.log("garbled")
    assert "Traceback" not in garbled_log
    assert "ihs_0123456789abcdef_leaked" not in garbled_log
    records = json_lines(garbled_log, "garbled")
    assert any(r["logger"] == "uvicorn.error" and "Invalid HTTP request" in r["message"] for r in records)


async def test_both_api_processes_answer_an_operations_result_on_the_very_next_read(
    processes: Processes, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> None:
    # Node answers reused for a minute: a read served from a stale answer would show for far longer than this test.
    processes.env["INFRAHAUS_INVENTORY_CACHE_MS"] = "60000"
    api1, api1_ready = start_api(processes, "api1", workers=1)
    api2, api2_ready = start_api(processes, "api2", workers=1)
    await asyncio.gather(api1_ready, api2_ready, start_worker(processes, count=1)[1])
    async with httpx.AsyncClient(base_url=api1, timeout=30) as one:
        csrf = await login(one)
        one.headers["X-CSRF-Token"] = csrf
        async with httpx.AsyncClient(
            base_url=api2, timeout=30, cookies=one.cookies, headers={"X-CSRF-Token": csrf}
        ) as two:
            assert (await one.post("/api/nodes", json=node_body(sim_node, simulator_config))).status_code == 201

            async def reads() -> list[str]:
                """The status each process answers, detail and list, one request each."""
                statuses = []
                for http in (one, two):
                    statuses.append((await http.get(f"/api/containers/{container_id}")).json()["status"])
                    statuses.append((await http.get("/api/containers")).json()["items"][0]["status"])
                return statuses

            created = await one.post(
                "/api/containers", json={"hostname": "ryw", "os_template": DEMO_OSTEMPLATE, "vmid": 175}
            )
            assert created.status_code == 202, created.text
            container_id = created.json()["container"]["id"]
            assert await reads() == ["unknown"] * 4  # both processes now hold a node answer without the guest
            op = await wait_operation(one, created.json()["operation"]["id"])
            assert op["status"] == "succeeded", op
            assert await reads() == ["running"] * 4

            for action, expected in (
                ("stop", "stopped"),
                ("start", "running"),
                ("shutdown", "stopped"),
                ("start", "running"),
                ("restart", "running"),
            ):
                # Both processes now hold a node answer from before the action.
                assert len(set(await reads())) == 1
                response = await one.post(f"/api/containers/{container_id}/{action}")
                assert response.status_code == 202, response.text
                op = await wait_operation(one, response.json()["id"])
                assert op["status"] == "succeeded", op
                assert await reads() == [expected] * 4, action
    processes.stop_all(signal.SIGKILL)  # a graceful stop is not what this test is about (and takes seconds)
