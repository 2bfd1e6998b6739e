"""Benchmark: `GET /api/containers` over 5 nodes x 100 containers with 50 ms node latency (target: p50 ≤ 1.3 x the
slowest node's latency). The authenticated read's throughput is `tests.bench.throughput` (wrk).

Everything runs on loopback: a fresh PostgreSQL database, a Redis key prefix, 5 simulated Proxmox nodes (one
`infrahaus pvesim` process each, like separate machines, each with 133 guests of which 100 are containers,
answering every request after 50 ms) and the API under uvicorn (`infrahaus api`, one worker). The API's inventory
cache is DISABLED (`INFRAHAUS_INVENTORY_CACHE_MS=0`), so every sampled list call asks all 5 nodes; the pooled node
connections stay warm, as they would in production. Samples are taken one at a time (closed loop, one client):
first the plain `GET /api/containers` (the default page of 50 newest; the target is judged on it), then
`?limit=500` (all 500 items in one page, which adds the cost of building and sending 500 items).

Prints a markdown table and writes the figures to `bench-results/list_containers.json`. Not a test: run it with
`uv run python -m tests.bench.list_containers`. Needs PostgreSQL and Redis on 127.0.0.1 (the test suite's).
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from infrahaus_domain import migrations
from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.models.containers import Container
from infrahaus_proxmox import ProxmoxClient, TlsPolicy, TokenAuth, fetch_certificate
from infrahaus_proxmox.errors import ProxmoxError
from infrahaus_pvesim.config import DEMO_PASSWORD, DEMO_TOKEN_ID, DEMO_TOKEN_SECRET, DEMO_USER
from tests.bench.vmid_check import _api_server, _percentile
from tests.fixtures.dev import free_port
from tests.fixtures.services import REDIS_BASE_URL as REDIS_URL
from tests.fixtures.services import pg_url_for, temporary_database, temporary_redis_prefix

NODES = 5
PER_NODE = 100
GUESTS = 133  # pvesim's layout: 100 LXC containers and 33 QEMU VMs
LATENCY = 0.050
TARGET_LIST_RATIO = 1.3
RESULTS = Path("bench-results") / "list_containers.json"
_SERVER_TIMING = re.compile(r"app;dur=([0-9.]+)")


@dataclass
class SimNode:
    """One simulated node served by its own `infrahaus pvesim` process."""

    name: str
    api_port: int
    ssh_port: int
    fingerprint: str = ""


def _lxc_vmids() -> list[int]:
    """The LXC guests `pvesim --guests 133` pre-populates: every fourth of VMIDs 100..232 is a QEMU VM, so 100
    containers remain, every other one running."""
    return [100 + index for index in range(GUESTS) if index % 4 != 3]


@contextlib.asynccontextmanager
async def _simulated_nodes(data_dir: Path) -> AsyncIterator[list[SimNode]]:
    """One `infrahaus pvesim` process per node (like separate machines), each answering after `LATENCY`."""
    nodes: list[SimNode] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(NODES):
            node = SimNode(name=f"pve{index + 1}", api_port=free_port(), ssh_port=free_port())
            argv = [sys.executable, "-m", "infrahaus.cli", "pvesim", "--node", node.name]
            argv += ["--port", str(node.api_port), "--ssh-port", str(node.ssh_port), "--latency", str(LATENCY)]
            argv += ["--guests", str(GUESTS), "--data-dir", str(data_dir / node.name)]
            processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
            nodes.append(node)
        deadline = time.monotonic() + 60
        for node, process in zip(nodes, processes, strict=True):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"pvesim for {node.name} exited with {process.returncode}")
                try:
                    node.fingerprint = (await fetch_certificate("127.0.0.1", node.api_port)).fingerprint_sha256
                    break
                except ProxmoxError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"pvesim for {node.name} did not start within 60 s") from None
                    await asyncio.sleep(0.2)
        yield nodes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _register(client: httpx.AsyncClient, nodes: list[SimNode]) -> dict[str, str]:
    login = await client.post("/api/auth/login", json={"username": DEMO_USER, "password": DEMO_PASSWORD})
    login.raise_for_status()
    client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
    ids: dict[str, str] = {}
    for node in nodes:
        created = await client.post(
            "/api/nodes",
            json={
                "name": node.name,
                "host": "127.0.0.1",
                "port": node.api_port,
                "token_id": DEMO_TOKEN_ID,
                "token_secret": DEMO_TOKEN_SECRET,
                "tls_fingerprint": node.fingerprint,
                "ssh_port": node.ssh_port,
                "ssh_password": DEMO_PASSWORD,
            },
        )
        created.raise_for_status()
        ids[node.name] = created.json()["id"]
    return ids


async def _insert_containers(database_url: str, user_id: str, placements: list[tuple[str, int]]) -> None:
    engine = create_engine(database_url)
    try:
        base = datetime.now(UTC) - timedelta(hours=1)
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            for index, (node_id, vmid) in enumerate(placements):
                container = Container(
                    user_id=uuid.UUID(user_id),
                    node_id=uuid.UUID(node_id),
                    vmid=vmid,
                    hostname=f"ct{vmid}",
                    lifecycle="ready",
                    ip_address=f"10.0.{index // 250}.{index % 250}",
                    request={},
                )
                container.created_at = base + timedelta(milliseconds=index)
                session.add(container)
            await session.commit()
    finally:
        await engine.dispose()


async def _sample_list(client: httpx.AsyncClient, samples: int, limit: int | None) -> tuple[list[float], list[float]]:
    """`samples` sequential list calls (`limit` None: the default page of 50); checks every answer is complete.
    Returns client-side latencies and the server's own (`Server-Timing: app;dur=`), in ms."""
    params = {"limit": limit} if limit is not None else {}
    expected = limit or 50
    latencies: list[float] = []
    server: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        response = await client.get("/api/containers", params=params)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        if match := _SERVER_TIMING.search(response.headers.get("server-timing", "")):
            server.append(float(match[1]))
        body = response.json()
        if len(body["items"]) != expected or body["unreachable_nodes"]:
            raise RuntimeError(f"incomplete list: {len(body['items'])} items, {body['unreachable_nodes']}")
        if any(item["status"] == "unknown" for item in body["items"]):
            raise RuntimeError("a container shows unknown status")
    return latencies, server


async def _sample_raw(nodes: list[SimNode], samples: int) -> list[float]:
    """The floor on this machine right now: the same 5 node lists asked concurrently by a bare client (warm
    connections), with no API in between."""
    clients = [
        ProxmoxClient(
            f"https://127.0.0.1:{node.api_port}",
            TokenAuth(token_id=DEMO_TOKEN_ID, secret=DEMO_TOKEN_SECRET),
            tls=TlsPolicy.pinned(node.fingerprint),
            retries=0,
        )
        for node in nodes
    ]
    try:

        async def fan_out() -> float:
            started = time.perf_counter()
            await asyncio.gather(
                *(c.request("GET", f"/nodes/{n.name}/lxc") for c, n in zip(clients, nodes, strict=True))
            )
            return (time.perf_counter() - started) * 1000

        await fan_out()
        return [await fan_out() for _ in range(samples)]
    finally:
        for client in clients:
            await client.aclose()


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


async def run(samples: int) -> int:
    with (
        temporary_database("bench") as database_name,
        temporary_redis_prefix(REDIS_URL, "bench") as prefix,
        tempfile.TemporaryDirectory() as tmp,
    ):
        database_url = pg_url_for(database_name)
        engine = create_engine(database_url)
        await migrations.upgrade(engine)
        await engine.dispose()
        async with _simulated_nodes(Path(tmp)) as nodes:
            env = {
                "INFRAHAUS_DATABASE_URL": database_url,
                "INFRAHAUS_REDIS_URL": REDIS_URL,
                "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
                "INFRAHAUS_REDIS_PREFIX": prefix,
                "INFRAHAUS_ENCRYPTION_KEYS": format_key(generate_key("bench")),
                "INFRAHAUS_AUTH_PVE_URL": f"https://127.0.0.1:{nodes[0].api_port}",
                "INFRAHAUS_AUTH_PVE_FINGERPRINT": nodes[0].fingerprint,
                "INFRAHAUS_COOKIE_SECURE": "false",
                "INFRAHAUS_LOG_LEVEL": "WARNING",
                # Every sampled list call fans out to all nodes.
                "INFRAHAUS_INVENTORY_CACHE_MS": "0",
            }
            async with (
                _api_server(env, free_port(), 1) as base_url,
                httpx.AsyncClient(base_url=base_url, timeout=30.0) as client,
            ):
                ids = await _register(client, nodes)
                user_id = (await client.get("/api/auth/me")).json()["user"]["id"]
                placements = [(ids[node.name], vmid) for node in nodes for vmid in _lxc_vmids()]
                await _insert_containers(database_url, user_id, placements)
                await _sample_list(client, 5, None)  # warm-up: pooled node connections, first-request costs
                latencies, server = await _sample_list(client, samples, None)
                full, _ = await _sample_list(client, samples, NODES * PER_NODE)
                raw = await _sample_raw(nodes, samples)
                slowest = LATENCY * 1000

    load = os.getloadavg()[0]
    p50, p99 = statistics.median(latencies), _percentile(latencies, 0.99)
    full_p50, full_p99 = statistics.median(full), _percentile(full, 0.99)
    server_p50 = statistics.median(server) if server else None
    raw_p50 = statistics.median(raw)
    ratio = p50 / slowest
    list_ok = ratio <= TARGET_LIST_RATIO
    _out(f"GET /api/containers (default page of 50, and limit=500 for all): {NODES} nodes x {PER_NODE} containers,")
    _out(f"each node answering after {LATENCY * 1000:g} ms; inventory cache disabled; {samples} sequential samples.")
    _out(
        f"Machine: {os.cpu_count()} CPUs, 1-minute load average {load:.2f} at the end "
        "(other work inflates every figure)."
    )
    _out("")
    _out("| measure | value | target | verdict |")
    _out("|---|---|---|---|")
    target = f"≤ {TARGET_LIST_RATIO} x"
    _out(f"| list p50 (page of 50) | {p50:.1f} ms ({ratio:.2f} x slowest node) | {target} | {_verdict(list_ok)} |")
    _out(f"| list p99 (page of 50) | {p99:.1f} ms ({p99 / slowest:.2f} x slowest node) | - | - |")
    if server_p50 is not None:
        _out(f"| list p50 server-side (page of 50) | {server_p50:.1f} ms ({server_p50 / slowest:.2f} x) | - | - |")
    _out(f"| floor: the 5 node lists asked directly, p50 | {raw_p50:.1f} ms ({raw_p50 / slowest:.2f} x) | - | - |")
    _out(f"| list all 500, p50 | {full_p50:.1f} ms ({full_p50 / slowest:.2f} x slowest node) | - | - |")
    _out(f"| list all 500, p99 | {full_p99:.1f} ms ({full_p99 / slowest:.2f} x slowest node) | - | - |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "name": "list_containers",
                "nodes": NODES,
                "containers_per_node": PER_NODE,
                "node_latency_ms": LATENCY * 1000,
                "inventory_cache": "disabled",
                "samples": samples,
                "list_p50_ms": round(p50, 2),
                "list_p99_ms": round(p99, 2),
                "list_p50_ratio": round(ratio, 3),
                "list_p99_ratio": round(p99 / slowest, 3),
                "list_server_p50_ms": round(server_p50, 2) if server_p50 is not None else None,
                "raw_fanout_p50_ms": round(raw_p50, 2),
                "list_all_p50_ms": round(full_p50, 2),
                "list_all_p99_ms": round(full_p99, 2),
                "list_all_p50_ratio": round(full_p50 / slowest, 3),
                "list_target_ratio": TARGET_LIST_RATIO,
                "load_average_1m": round(load, 2),
                "cpus": os.cpu_count(),
                "meets_targets": list_ok,
            },
            indent=2,
        )
        + "\n"
    )
    _out(f"\nwrote {RESULTS}")
    return 0 if list_ok else 1


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=100, help="list calls measured (default 100, at most 1000)")
    args = parser.parse_args()
    if not 1 <= args.samples <= 1000:
        parser.error("--samples must be in [1, 1000]")
    return asyncio.run(run(args.samples))


if __name__ == "__main__":
    sys.exit(main())
