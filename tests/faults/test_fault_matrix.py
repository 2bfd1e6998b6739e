"""The fault matrix: real `infrahaus api` and `infrahaus worker` processes on a PostgreSQL and a Redis server of
this module's own (never the machine's shared ones), with the simulator in this test's event loop.

Each scenario builds the same situation — two ready containers, then three creations, a stop and a delete in
flight — injects one fault while the work runs, and then requires:

- every operation reaches a terminal state within a deadline, and none is lost (the API lists exactly the
  operations this test caused);
- every container's lifecycle matches the simulator: `ready` ⇔ the guest exists (running, or stopped after a
  successful stop); deleted ⇔ the guest is gone; `error` ⇔ a failed creation with a classified `error.code`;
- every guest on the simulator belongs to exactly one container, and no VMID was sent to Proxmox twice.
"""

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrahaus_domain import migrations
from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.settings import (
    DatabaseSettings,
    EncryptionSettings,
    LogSettings,
    OutboundSettings,
    RedisSettings,
    SessionSettings,
    Settings,
)
from infrahaus_pvesim import RunningNode, SimulatorConfig
from tests.fixtures.api import LOOPBACK, create_user_with_token
from tests.fixtures.dev import free_port
from tests.fixtures.nodes import node_body
from tests.fixtures.private_services import PrivatePostgres, PrivateRedis
from tests.fixtures.processes import Processes, wait_live

pytestmark = pytest.mark.e2e

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TERMINAL = {"succeeded", "failed", "cancelled"}
# Codes a fault may legitimately end an operation with; anything else (e.g. internal_error) is a bug.
FAULT_CODES = {"node_unreachable", "timeout", "worker_lost"}
# Long enough that the fault lands while scripts run, short enough to keep the matrix at a few minutes.
SLOW_SCRIPT = 'log_info "working"\nsleep 2\nlog_info "done"\n'
# Metrics off: not under test here, and their default port (9191, every address) would be shared by every run.
WORKER_ARGS = ("worker", "--processes", "1", "--threads", "4", "--metrics-port", "0")


@pytest.fixture
async def fault_settings(private_postgres: PrivatePostgres, private_redis: PrivateRedis) -> Settings:
    """Settings on this module's private servers: a fresh migrated database and a fresh Redis prefix per test."""
    url = private_postgres.create_database(f"faults_{uuid.uuid4().hex[:12]}")
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    return Settings(
        database=DatabaseSettings(url=url),
        redis=RedisSettings(url=private_redis.url, prefix=f"faults-{uuid.uuid4().hex[:8]}:"),
        encryption=EncryptionSettings(keys=(generate_key("faults"),)),
        sessions=SessionSettings(cookie_secure=False),
        outbound=OutboundSettings(allow=LOOPBACK),
        logging=LogSettings(format="text"),
    )


@pytest.fixture
def fault_processes(fault_settings: Settings, tmp_path: Path) -> Iterator[Processes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    assert fault_settings.redis.url is not None
    env.update(
        {
            "INFRAHAUS_DATABASE_URL": fault_settings.database.url,
            "INFRAHAUS_REDIS_URL": fault_settings.redis.url,
            "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
            "INFRAHAUS_REDIS_PREFIX": fault_settings.redis.prefix,
            "INFRAHAUS_ENCRYPTION_KEYS": ",".join(format_key(k) for k in fault_settings.encryption.keys),
            "INFRAHAUS_TEMPLATES_DIR": str(TEMPLATES_DIR),
            "INFRAHAUS_COOKIE_SECURE": "false",
            "INFRAHAUS_LOG_FORMAT": "text",
            # Quick recovery: a dead worker's messages come back after 3 s; the reconciler runs every second,
            # re-sends queued operations whose message is older than 5 s (a Redis restart loses them all) and
            # declares running operations lost after 12 s without a heartbeat (longer than the redelivery, so
            # a redelivered message gets to resume its operation first).
            "INFRAHAUS_WORKER_BROKER_HEARTBEAT": "3",
            "INFRAHAUS_WORKER_HEARTBEAT_INTERVAL": "1",
            "INFRAHAUS_WORKER_HEARTBEAT_STALE": "12",
            "INFRAHAUS_WORKER_RECONCILE_INTERVAL": "1",
            "INFRAHAUS_WORKER_REQUEUE_AFTER": "5",
            "INFRAHAUS_WORKER_SCRIPT": "60",
            "INFRAHAUS_WORKER_LOCK_WAIT": "10",
        }
    )
    procs = Processes(env, tmp_path)
    try:
        yield procs
    finally:
        # SIGKILL: a graceful dramatiq shutdown takes seconds and proves nothing here.
        procs.stop_all(signal.SIGKILL)


@pytest.fixture
async def product(
    fault_processes: Processes, fault_settings: Settings, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> AsyncIterator["Product"]:
    """The API (one server process) and a worker running, a bearer-token client, the node and a slow template."""
    port = free_port()
    api = fault_processes.start("api", "api", "--port", str(port), "--workers", "1")
    fault_processes.start("worker", *WORKER_ARGS)
    base_url = f"http://127.0.0.1:{port}"
    await wait_live(f"{base_url}/health/ready", api, what=fault_processes.log("api")[-2000:])
    _, token = await create_user_with_token(fault_settings, "faults@pve")
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15) as http:
        response = await http.post("/api/nodes", json=node_body(sim_node, simulator_config))
        assert response.status_code == 201, response.text
        response = await http.post(
            "/api/templates",
            json={
                "name": "slow-faults",
                "os_template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                "scripts": [{"name": "10-slow", "content": SLOW_SCRIPT, "position": 10}],
            },
        )
        assert response.status_code == 201, response.text
        yield Product(http=http, processes=fault_processes, node=sim_node, template_id=response.json()["id"])


@dataclass
class Product:
    http: httpx.AsyncClient
    processes: Processes
    node: RunningNode
    template_id: str
    containers: dict[str, int] = field(default_factory=dict)  # container id -> vmid
    operations: dict[str, str] = field(default_factory=dict)  # operation id -> container id

    async def call(self, method: str, path: str, *, timeout: float = 60, **kwargs: Any) -> httpx.Response:
        """A request retried while the API answers 5xx or not at all (its database or Redis may be restarting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = await self.http.request(method, path, **kwargs)
                if response.status_code < 500:
                    return response
                failure = f"{response.status_code} {response.text[:300]}"
            except httpx.TransportError as exc:
                failure = repr(exc)
            assert time.monotonic() < deadline, f"{method} {path}: {failure}\n{self.logs()}"
            await asyncio.sleep(0.2)

    async def create(self, vmid: int) -> str:
        response = await self.call(
            "POST",
            "/api/containers",
            json={"hostname": f"fault-{vmid}", "template_id": self.template_id, "vmid": vmid},
        )
        assert response.status_code == 202, response.text
        container_id: str = response.json()["container"]["id"]
        self.containers[container_id] = vmid
        self.operations[response.json()["operation"]["id"]] = container_id
        return container_id

    async def act(self, container_id: str, action: str) -> None:
        if action == "delete":
            response = await self.call("DELETE", f"/api/containers/{container_id}")
        else:
            response = await self.call("POST", f"/api/containers/{container_id}/{action}")
        assert response.status_code == 202, response.text
        self.operations[response.json()["id"]] = container_id

    async def operation(self, op_id: str) -> dict[str, Any]:
        response = await self.call("GET", f"/api/operations/{op_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_terminal(self, timeout: float = 120) -> dict[str, dict[str, Any]]:
        """Every operation of this test once all are terminal (fails with the stragglers after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            ops = {op_id: await self.operation(op_id) for op_id in self.operations}
            pending = {k: (v["kind"], v["status"], v["step"]) for k, v in ops.items() if v["status"] not in TERMINAL}
            if not pending:
                return ops
            assert time.monotonic() < deadline, f"operations not terminal: {pending}\n{self.logs()}"
            await asyncio.sleep(0.25)

    async def wait_step(self, op_id: str, step: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (op := await self.operation(op_id))["step"] != step:
            assert op["status"] not in TERMINAL, op
            assert time.monotonic() < deadline, op
            await asyncio.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.processes.log(n)[-2500:]}" for n in ("api", "worker"))


def creates_sent(node: RunningNode, vmid: int) -> int:
    return sum(
        1 for r in node.requests if r.method == "POST" and r.path.endswith("/lxc") and r.params.get("vmid") == str(vmid)
    )


async def assert_consistent(product: Product, ops: dict[str, dict[str, Any]]) -> None:
    """Operations all accounted for; API lifecycles and the simulator's guests agree."""
    listed = (await product.call("GET", "/api/operations", params={"limit": 100})).json()["items"]
    assert {op["id"] for op in listed} == set(product.operations), "operations lost or invented"

    guests = {vmid: g for vmid, g in product.node.state.guests.items() if g.type == "lxc"}
    alive: set[int] = set()
    for container_id, vmid in product.containers.items():
        own = sorted((op for op_id, op in ops.items() if product.operations[op_id] == container_id), key=_created)
        last = own[-1]
        for op in own:
            if op["status"] == "failed":
                assert op["error"]["code"] in FAULT_CODES, (op["step"], op["error"])
        response = await product.call("GET", f"/api/containers/{container_id}")
        if response.status_code == 404:
            assert (last["kind"], last["status"]) == ("delete", "succeeded"), own
            assert vmid not in guests, f"deleted container {vmid} still on the node"
            continue
        assert response.status_code == 200, response.text
        lifecycle = response.json()["lifecycle"]
        alive.add(vmid)
        if lifecycle == "error":
            assert last["status"] == "failed", own
            assert last["kind"] in ("create", "delete"), own
            continue
        assert lifecycle == "ready", (lifecycle, own)
        assert vmid in guests, f"ready container {vmid} has no guest"
        if last["status"] == "succeeded":
            expected = "stopped" if last["kind"] == "stop" else "running"
            assert guests[vmid].status == expected, (vmid, guests[vmid].status, own)
    assert set(guests) <= alive, f"guests without a container: {set(guests) - alive}"
    for vmid in product.containers.values():
        assert creates_sent(product.node, vmid) <= 1, f"VMID {vmid} created twice"


def _created(op: dict[str, Any]) -> str:
    created: str = op["created_at"]
    return created


async def run_scenario(product: Product, fault: Callable[[], Awaitable[None]]) -> dict[str, dict[str, Any]]:
    """Two ready containers; then three creations, a stop and a delete in flight; the fault; the checks."""
    ready = [await product.create(200), await product.create(201)]
    await product.wait_terminal()
    creating = [await product.create(vmid) for vmid in (210, 211, 212)]
    await product.act(ready[0], "stop")
    await product.act(ready[1], "delete")
    first_op = next(op_id for op_id, cid in product.operations.items() if cid == creating[0])
    await product.wait_step(first_op, "scripts")
    await fault()
    ops = await product.wait_terminal()
    await assert_consistent(product, ops)
    return ops


async def test_redis_restart(product: Product, private_redis: PrivateRedis) -> None:
    async def fault() -> None:
        await asyncio.to_thread(private_redis.restart)

    await run_scenario(product, fault)


async def test_postgres_restart(product: Product, private_postgres: PrivatePostgres) -> None:
    async def fault() -> None:
        await asyncio.to_thread(private_postgres.restart, "immediate")

    await run_scenario(product, fault)


async def test_worker_sigkill_and_replacement(product: Product) -> None:
    async def fault() -> None:
        product.processes.kill("worker")
        product.processes.start("worker", *WORKER_ARGS)

    ops = await run_scenario(product, fault)
    # The killed worker held running creations, a stop and a delete: each was resumed by the new worker.
    assert all(op["status"] == "succeeded" for op in ops.values()), ops


async def test_node_blackhole_for_a_while(product: Product) -> None:
    async def fault() -> None:
        product.node.faults.blackhole = True
        # A few seconds of silence: work in flight meets it, retries bridge it, later work finds the node back.
        await asyncio.sleep(4)
        product.node.faults.blackhole = False

    ops = await run_scenario(product, fault)
    failed = [op for op in ops.values() if op["status"] == "failed"]
    assert all(op["error"]["code"] in ("node_unreachable", "timeout") for op in failed), failed


async def test_node_unreachable_until_everything_ends(product: Product) -> None:
    async def fault() -> None:
        product.node.faults.unreachable = True

    try:
        ops = await run_scenario(product, fault)
    finally:
        product.node.faults.unreachable = False
    failed = [op for op in ops.values() if op["status"] == "failed"]
    # The stop and the delete need the node's API: they cannot succeed, and must say why.
    codes = [(op["kind"], op["step"], op["error"]["code"]) for op in failed]
    assert len(failed) >= 2, codes
    assert all(code in ("node_unreachable", "timeout") for _, _, code in codes), codes
