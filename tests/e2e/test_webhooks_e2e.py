"""Webhooks across a worker SIGKILL, with the production processes: `infrahaus api` and `infrahaus worker` against
PostgreSQL and Redis, the simulator as the node, and a receiver on loopback that verifies every request with the
`standardwebhooks` package.

The worker is killed while a delivery is in flight (the receiver holds its answer) and while the creation that
caused it runs. A new worker resumes the creation, sends the interrupted delivery again once its lease ended (the
same `webhook-id`), and every event of the creation arrives at least once.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_pvesim import RunningNode, SimNodeConfig, SimToken, SimulatorConfig
from infrahaus_pvesim.config import DEMO_TOKEN_ID
from tests.e2e.test_production import LOGIN_PASSWORD, SSH_PASSWORD, TEMPLATES_DIR, TOKEN_SECRET, login, template_id
from tests.fixtures.dev import free_port
from tests.fixtures.nodes import node_body
from tests.fixtures.processes import Processes, wait_live
from tests.fixtures.services import pg_url_for, temporary_database
from tests.fixtures.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e

WEBHOOK_TIMEOUT = 3  # the lease of a claimed delivery is 2 * this + 5 s


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
def processes(redis_url: str, redis_prefix: str, sim_node: RunningNode, tmp_path: Path) -> Iterator[Processes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRAHAUS_", "PROMETHEUS_"))}
    with temporary_database("hooks") as name:
        environ.update(
            {
                "INFRAHAUS_DATABASE_URL": pg_url_for(name),
                "INFRAHAUS_REDIS_URL": redis_url,
                "INFRAHAUS_REDIS_PREFIX": f"{redis_prefix}{uuid.uuid4().hex[:8]}:",
                "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
                "INFRAHAUS_ENCRYPTION_KEYS": format_key(generate_key("hooks1")),
                "INFRAHAUS_AUTH_SERVERS": json.dumps(
                    [{"name": "pve", "url": sim_node.api_url, "fingerprint": sim_node.fingerprint}]
                ),
                "INFRAHAUS_TEMPLATES_DIR": str(TEMPLATES_DIR),
                "INFRAHAUS_COOKIE_SECURE": "false",
                "INFRAHAUS_WORKER_HEARTBEAT_INTERVAL": "1",
                "INFRAHAUS_WORKER_HEARTBEAT_STALE": "5",
                "INFRAHAUS_WORKER_RECONCILE_INTERVAL": "1",
                "INFRAHAUS_WORKER_REQUEUE_AFTER": "5",
                "INFRAHAUS_WORKER_BROKER_HEARTBEAT": "3",
                "INFRAHAUS_WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT),
                "INFRAHAUS_WEBHOOK_BACKOFF_BASE": "0.5",
                "INFRAHAUS_WEBHOOK_POLL_INTERVAL": "0.5",
            }
        )
        migrate = subprocess.run(
            [sys.executable, "-m", "infrahaus.cli", "migrate"], env=environ, capture_output=True, text=True, timeout=120
        )
        assert migrate.returncode == 0, migrate.stderr
        procs = Processes(environ, tmp_path)
        try:
            yield procs
        finally:
            procs.stop_all()


async def start_worker(processes: Processes) -> None:
    port = free_port()
    process = processes.start(
        "worker", "worker", "--processes", "1", "--threads", "2", "--metrics-port", str(port), "--drain-timeout", "1"
    )
    await wait_live(f"http://127.0.0.1:{port}/metrics", process, what="worker metrics", timeout=120)


async def wait_for(check: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_every_event_arrives_across_a_worker_sigkill(
    processes: Processes, sim_node: RunningNode, simulator_config: SimulatorConfig, receiver: Receiver
) -> None:
    port = free_port()
    api_process = processes.start("api", "api", "--port", str(port), "--workers", "1")
    base_url = f"http://127.0.0.1:{port}"
    await asyncio.gather(
        wait_live(f"{base_url}/health/ready", api_process, what="api", timeout=120), start_worker(processes)
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        http.headers["X-CSRF-Token"] = await login(http)
        assert (await http.post("/api/nodes", json=node_body(sim_node, simulator_config))).status_code == 201
        assert (await http.post("/api/templates/discover")).status_code in (200, 201)
        hook = await http.post("/api/webhooks", json={"url": receiver.url("/hook")})
        assert hook.status_code == 201, hook.text
        hook_id = hook.json()["id"]
        receiver.secrets["/hook"] = hook.json()["secret"]

        # The first delivery is held by the receiver: the worker is mid-request when it is killed.
        receiver.hold = 2 * WEBHOOK_TIMEOUT
        created = await http.post(
            "/api/containers",
            json={"hostname": "hooked", "template_id": await template_id(http, "web-hello"), "vmid": 171},
        )
        assert created.status_code == 202, created.text
        container_id = created.json()["container"]["id"]
        op_id = created.json()["operation"]["id"]
        await wait_for(lambda: receiver.on("/hook"), "the first delivery reaching the receiver")
        processes.kill("worker")  # SIGKILL to the whole group: nothing is recorded about the attempt
        [interrupted] = receiver.on("/hook")
        assert interrupted.payload["type"] == "container.created"
        op = (await http.get(f"/api/operations/{op_id}")).json()
        assert op["status"] in ("queued", "running"), op  # the creation was cut off too
        receiver.hold = 0

        await start_worker(processes)
        expected = {"container.created", "container.ready", "operation.succeeded"}
        await wait_for(
            lambda: (
                {r.payload["type"] for r in receiver.on("/hook")} >= expected
                and len([r for r in receiver.on("/hook") if r.message_id == interrupted.message_id]) >= 2
            ),
            "every event of the creation, and the interrupted delivery again",
        )
        op = (await http.get(f"/api/operations/{op_id}")).json()
        assert op["status"] == "succeeded", op
        assert all(r.verified for r in receiver.received), [r.headers for r in receiver.received if not r.verified]
        for r in receiver.on("/hook"):
            assert r.payload["data"]["container_id"] == container_id

        async def delivered() -> list[dict[str, Any]]:
            deadline = time.monotonic() + 30
            while True:
                items: list[dict[str, Any]] = (await http.get(f"/api/webhooks/{hook_id}/deliveries")).json()["items"]
                if {d["event_type"] for d in items} >= expected and all(d["status"] == "delivered" for d in items):
                    return items
                assert time.monotonic() < deadline, items
                await asyncio.sleep(0.1)

        log = {d["id"]: d for d in await delivered()}
        again = log[interrupted.message_id]
        assert again["event_type"] == "container.created"
        assert again["attempts"] == 2  # the killed attempt, then the one after its lease ended
        # The killed attempt never got its answer: the log says it was interrupted.
        assert [a["response_code"] for a in again["attempt_log"]] == [None, 200]
        assert "interrupted" in again["attempt_log"][0]["error"]

    # The secret was shown once, in the creation's answer: no process wrote it anywhere.
    secret = receiver.secrets["/hook"]
    assert secret not in processes.log("api") + processes.log("worker")
    assert secret.removeprefix("whsec_") not in processes.log("api") + processes.log("worker")
