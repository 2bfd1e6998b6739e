"""Bulk actions through real processes: one `infrahaus api`, two `infrahaus worker` processes (four threads each),
PostgreSQL, Redis and a simulator with three nodes served by this test's loop.

`max_parallel` must hold across worker processes: it is measured from the operations' own `started_at` /
`finished_at` (the claim and the end, both stamped in the database) and from the batch's counts while it runs.
"""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.crypto import format_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.models.containers import Operation
from infrahaus_domain.settings import Settings
from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig
from tests.fixtures.api import create_user_with_token
from tests.fixtures.dev import free_port
from tests.fixtures.nodes import node_body
from tests.fixtures.processes import Processes, wait_live

pytestmark = pytest.mark.e2e

DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
NODES = ("pve1", "pve2", "pve3")
# Two processes with four threads each: either one alone could run more operations at once than the batch allows.
WORKER_ARGS = ("worker", "--processes", "1", "--threads", "4", "--metrics-port", "0")
WORKERS = ("worker-a", "worker-b")
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    # Every Proxmox task takes half a second, so operations of a batch overlap whenever they are allowed to.
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name=name) for name in NODES],
        task_duration=0.5,
    )


@pytest.fixture
def processes(settings: Settings, tmp_path: Path) -> Iterator[Processes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    assert settings.redis.url is not None
    env.update(
        {
            "INFRAHAUS_DATABASE_URL": settings.database.url,
            "INFRAHAUS_REDIS_URL": settings.redis.url,
            "INFRAHAUS_OUTBOUND_ALLOW": ",".join(settings.outbound.allow),
            "INFRAHAUS_REDIS_PREFIX": settings.redis.prefix,
            "INFRAHAUS_ENCRYPTION_KEYS": ",".join(format_key(k) for k in settings.encryption.keys),
            "INFRAHAUS_COOKIE_SECURE": "false",
            "INFRAHAUS_LOG_FORMAT": "text",
            "INFRAHAUS_WORKER_HEARTBEAT_INTERVAL": "1",
            "INFRAHAUS_WORKER_RECONCILE_INTERVAL": "2",
            "INFRAHAUS_WORKER_REQUEUE_AFTER": "20",
        }
    )
    procs = Processes(env, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all(signal.SIGKILL)


@pytest.fixture
async def http(
    processes: Processes, settings: Settings, simulator: Simulator, simulator_config: SimulatorConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """A bearer-token client of a running API process, with the three simulated nodes registered."""
    port = free_port()
    await wait_live(
        f"http://127.0.0.1:{port}/health/live",
        processes.start("api", "api", "--port", str(port), "--workers", "1"),
        what="infrahaus api",
    )
    _, token = await create_user_with_token(settings, "bulk@pve")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        for node in simulator.nodes:
            response = await client.post("/api/nodes", json=node_body(node, simulator_config))
            assert response.status_code == 201, response.text
        yield client


async def wait_operations(
    http: httpx.AsyncClient, op_ids: list[str], *, until: set[str] = TERMINAL, timeout: float = 180
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        ops = [(await http.get(f"/api/operations/{op_id}")).json() for op_id in op_ids]
        if all(op["status"] in until for op in ops):
            return ops
        assert time.monotonic() < deadline, [op for op in ops if op["status"] not in until]
        await asyncio.sleep(0.3)


async def wait_batch(http: httpx.AsyncClient, batch_id: str, *, timeout: float = 120) -> tuple[dict[str, Any], int]:
    """Poll the batch until nothing of it is queued or running; returns it and the most operations it ever showed
    running at once."""
    deadline = time.monotonic() + timeout
    most_running = 0
    while True:
        batch: dict[str, Any] = (await http.get(f"/api/batches/{batch_id}")).json()
        most_running = max(most_running, batch["counts"]["running"])
        if batch["status"] != "active":
            return batch, most_running
        assert time.monotonic() < deadline, batch["counts"]
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def ops_db(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings.database.url)
    try:
        async with async_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def peak_overlap(ops: list[dict[str, Any]]) -> int:
    """The most operations whose [started_at, finished_at] intervals overlap at one moment."""
    edges: list[tuple[datetime, int]] = []
    for op in ops:
        edges.append((datetime.fromisoformat(op["started_at"]), 1))
        edges.append((datetime.fromisoformat(op["finished_at"]), -1))
    # An end and a start at the same instant do not overlap: ends first.
    edges.sort(key=lambda edge: (edge[0], edge[1]))
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


async def test_bulk_stop_across_three_nodes_keeps_max_parallel_across_worker_processes(
    http: httpx.AsyncClient, processes: Processes, simulator: Simulator, settings: Settings
) -> None:
    for name in WORKERS:
        processes.start(name, *WORKER_ARGS)
    node_ids = [n["id"] for n in (await http.get("/api/nodes")).json()["items"]]
    assert len(node_ids) == 3
    created: list[tuple[str, str]] = []
    for i in range(11):
        response = await http.post(
            "/api/containers",
            json={"hostname": f"fleet-{i}", "os_template": DEBIAN, "vmid": 200 + i, "node_id": node_ids[i % 3]},
        )
        assert response.status_code == 202, response.text
        created.append((response.json()["container"]["id"], response.json()["operation"]["id"]))
    ops = await wait_operations(http, [op_id for _, op_id in created])
    assert [op["status"] for op in ops] == ["succeeded"] * 11, [op["error"] for op in ops]
    containers = [container_id for container_id, _ in created]
    guests = {
        node.name: sorted(v for v, g in node.state.guests.items() if g.status == "running") for node in simulator.nodes
    }
    assert guests == {"pve1": [200, 203, 206, 209], "pve2": [201, 204, 207, 210], "pve3": [202, 205, 208]}

    # Both workers are up; the last container's own stop waits on a config lock (a backup, say), so the bulk finds
    # it busy.
    deadline = time.monotonic() + 60
    while not all("ready for action" in processes.log(name) for name in WORKERS):
        assert time.monotonic() < deadline, [processes.log(name)[-2000:] for name in WORKERS]
        await asyncio.sleep(0.2)
    busy_node = simulator.nodes[1]
    busy_node.faults.lock(210, kind="backup")
    single = await http.post(f"/api/containers/{containers[10]}/stop")
    assert single.status_code == 202, single.text
    await wait_operations(http, [single.json()["id"]], until={"running"})
    body = {"action": "stop", "container_ids": containers, "max_parallel": 3}
    response = await http.post("/api/containers/bulk", json=body, headers={"Idempotency-Key": "fleet-stop"})
    assert response.status_code == 202, response.text
    batch = response.json()
    assert (batch["total"], batch["counts"]["queued"], batch["counts"]["skipped"]) == (11, 10, 1)
    [skipped] = [item for item in batch["operations"] if item["status"] == "skipped"]
    assert (skipped["container_id"], skipped["skipped"]) == (containers[10], "container_busy")
    assert sum(1 for item in batch["operations"] if item["waiting"]) == 7
    replay = await http.post("/api/containers/bulk", json=body, headers={"Idempotency-Key": "fleet-stop"})
    assert (replay.status_code, replay.json()["id"]) == (202, batch["id"])
    assert len((await http.get("/api/batches")).json()["items"]) == 1

    busy_node.faults.unlock(210)
    done, most_running = await wait_batch(http, batch["id"])
    assert done["status"] == "finished"
    assert done["counts"] == {"queued": 0, "running": 0, "succeeded": 10, "failed": 0, "cancelled": 0, "skipped": 1}
    batch_ops = [item["operation"] for item in done["operations"] if item["operation"] is not None]
    peak = peak_overlap(batch_ops)
    # Never more than three at once, though the two workers (eight threads, both consuming) could take more; and
    # operations did run side by side. (The bound is the database's: which worker took which operation varies.)
    async with ops_db(settings) as session:
        workers = set(
            (await session.scalars(select(Operation.worker_id).where(Operation.batch_id == UUID(batch["id"])))).all()
        )
    assert 2 <= peak <= 3, (peak, workers)
    assert 1 <= most_running <= 3
    await wait_operations(http, [single.json()["id"]])
    assert all(g.status == "stopped" for node in simulator.nodes for g in node.state.guests.values())
    for container_id in containers[:10]:
        events = (await http.get(f"/api/containers/{container_id}/events", params={"type": "stopped"})).json()
        assert len(events["items"]) == 1, events

    # Cancel: a start of all eleven, two at a time, cancelled at once. Whatever had started finishes; nothing
    # else runs.
    response = await http.post(
        "/api/containers/bulk", json={"action": "start", "selector": {"status": "stopped"}, "max_parallel": 2}
    )
    assert response.status_code == 202, response.text
    starting = response.json()
    assert starting["total"] == 11
    cancelled = await http.post(f"/api/batches/{starting['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    final, _ = await wait_batch(http, starting["id"])
    assert final["status"] == "cancelled"
    counts = final["counts"]
    assert counts["succeeded"] + counts["cancelled"] == 11
    assert counts["cancelled"] >= 9
    by_vmid: dict[int, str] = {}
    for item in final["operations"]:
        op = item["operation"]
        assert (op["status"] == "succeeded") == (op["started_at"] is not None), op
        detail = (await http.get(f"/api/containers/{item['container_id']}")).json()
        by_vmid[detail["vmid"]] = op["status"]
    live = {v: g.status for node in simulator.nodes for v, g in node.state.guests.items()}
    assert {v: "running" if s == "succeeded" else "stopped" for v, s in by_vmid.items()} == live
