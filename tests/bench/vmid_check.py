"""Benchmark: `GET /api/nodes/{id}/vmids/{vmid}` latency at a fixed request rate (target: p99 ≤ 5 ms server-side).

Starts everything on loopback: a fresh PostgreSQL database, a Redis key prefix, the Proxmox simulator (in this
process) and the API under uvicorn (a child process). Logs in, registers the simulator's node, warms the VMID
cache, then sends requests open-loop at `--rate` per second for `--duration` seconds and prints p50/p99:

- client-side: from the moment each request was due until its answer was read (a minimal keep-alive
  HTTP/1.1 client on 32 connections, so queueing behind a slow server is counted, not hidden);
- server-side: from the API's own `infrahaus_http_request_duration_seconds` histogram on `/metrics`
  (interpolated within its buckets: 1, 2.5, 5, 10 ms ...), or "not available" when the app exposes none.

It also checks that the simulator received no request while the cache was warm. Not a test: run it with
`uv run python -m tests.bench.vmid_check`. Needs PostgreSQL and Redis on 127.0.0.1 (the test suite's).
"""

import argparse
import asyncio
import contextlib
import math
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from infrahaus_domain import migrations
from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_pvesim import RunningNode, SimNodeConfig, Simulator, SimulatorConfig
from infrahaus_pvesim.config import DEMO_PASSWORD, DEMO_TOKEN_ID, DEMO_TOKEN_SECRET, DEMO_USER
from tests.fixtures.dev import free_port
from tests.fixtures.services import REDIS_BASE_URL as REDIS_URL
from tests.fixtures.services import pg_url_for, temporary_database, temporary_redis_prefix

ROUTE = "/api/nodes/{node_id}/vmids/{vmid}"
# How the route appears in the `route` label of the request-duration histogram (Litestar's path template).
ROUTE_LABEL = re.compile(r'route="/api/nodes/\{node_id[^}]*\}/vmids/\{vmid[^}]*\}"')
TARGET_P99_MS = 5.0
METRICS_TOKEN = secrets.token_urlsafe(24)


@contextlib.asynccontextmanager
async def _api_server(env: dict[str, str], port: int, workers: int) -> AsyncIterator[str]:
    """`infrahaus api` (uvicorn, the production server) as a child process."""
    argv = [sys.executable, "-m", "infrahaus.cli", "api", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(argv, env={**os.environ, **env})
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=base_url) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the API exited with {process.returncode} during start-up")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health/live")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not become live within 60 s")
                await asyncio.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _setup(client: httpx.AsyncClient, node: RunningNode) -> str:
    """Log in with the simulator's demo user and register its node; returns the node id."""
    login = await client.post("/api/auth/login", json={"username": DEMO_USER, "password": DEMO_PASSWORD})
    login.raise_for_status()
    client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
    created = await client.post(
        "/api/nodes",
        json={
            "name": "bench",
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
    node_id: str = created.json()["id"]
    (await client.get(f"/api/nodes/{node_id}/vmids")).raise_for_status()
    return node_id


# Greedy: the route label itself contains braces ("/api/nodes/{node_id}/...").
_BUCKET_RE = re.compile(r"^infrahaus_http_request_duration_seconds_bucket\{(?P<labels>.*)\} (?P<value>\S+)$")


async def _route_buckets(client: httpx.AsyncClient) -> dict[float, float] | None:
    """Cumulative histogram buckets (upper bound in seconds -> count) of the benchmarked route, if exposed."""
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    if response.status_code != 200:
        return None
    buckets: dict[float, float] = {}
    for line in response.text.splitlines():
        match = _BUCKET_RE.match(line)
        if match and ROUTE_LABEL.search(match["labels"]) and 'method="GET"' in match["labels"]:
            le = re.search(r'le="([^"]+)"', match["labels"])
            if le:
                bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
                buckets[bound] = buckets.get(bound, 0.0) + float(match["value"])
    return buckets


def _histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """Prometheus-style quantile (linear within a bucket) of the observations between two scrapes, in ms."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, previous = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower * 1000
            share = (rank - previous) / (cumulative - previous) if cumulative > previous else 1.0
            return (lower + (bound - lower) * share) * 1000
        lower, previous = bound, cumulative
    return None


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough to send GETs.

    Far cheaper per request than a full client, so on a small machine the load generator takes
    little CPU away from the server it measures.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cookie: str) -> None:
        self._reader = reader
        self._writer = writer
        self._head = f"Host: 127.0.0.1\r\nCookie: {cookie}\r\nAccept: application/json\r\n\r\n"

    @classmethod
    async def open(cls, port: int, cookie: str) -> "_Connection":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, cookie)

    async def get(self, path: str) -> int:
        self._writer.write(f"GET {path} HTTP/1.1\r\n{self._head}".encode())
        status = int((await self._reader.readline()).split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await self._reader.readexactly(length)
        return status

    def close(self) -> None:
        self._writer.close()


async def _drive(
    port: int, cookie: str, node_id: str, rate: float, duration: float, connections: int = 32
) -> tuple[list[float], int]:
    """Open-loop load: request i is due at start + i/rate whatever earlier requests are doing.

    Latency counts from the moment a request was due, so time spent waiting for a free connection
    (a server falling behind) shows in the client-side figures instead of being hidden.
    """
    latencies: list[float] = []
    errors = 0
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await _Connection.open(port, cookie))

    async def one(due: float, vmid: int) -> None:
        nonlocal errors
        connection = await pool.get()
        try:
            status = await asyncio.wait_for(connection.get(f"/api/nodes/{node_id}/vmids/{vmid}"), timeout=10)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
            # An overloaded or failing server shows as errors in the report, not as a crashed benchmark.
            errors += 1
            connection.close()
            pool.put_nowait(await _Connection.open(port, cookie))
            return
        pool.put_nowait(connection)
        latencies.append((time.perf_counter() - due) * 1000)
        if status != 200:
            errors += 1

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for i in range(int(rate * duration)):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, 100 + i % 50)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    return latencies, errors


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def run(rate: float, duration: float, workers: int) -> int:
    with (
        temporary_database("bench") as database_name,
        temporary_redis_prefix(REDIS_URL, "bench") as prefix,
        tempfile.TemporaryDirectory() as tmp,
    ):
        database_url = pg_url_for(database_name)
        engine = create_engine(database_url)
        await migrations.upgrade(engine)
        await engine.dispose()
        config = SimulatorConfig(data_dir=Path(tmp) / "pvesim", nodes=[SimNodeConfig(name="pve", guests=20)])
        async with Simulator(config) as simulator:
            node = simulator.nodes[0]
            env = {
                "INFRAHAUS_DATABASE_URL": database_url,
                "INFRAHAUS_REDIS_URL": REDIS_URL,
                "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
                "INFRAHAUS_REDIS_PREFIX": prefix,
                "INFRAHAUS_ENCRYPTION_KEYS": format_key(generate_key("bench")),
                "INFRAHAUS_AUTH_PVE_URL": node.api_url,
                "INFRAHAUS_AUTH_PVE_FINGERPRINT": node.fingerprint,
                "INFRAHAUS_COOKIE_SECURE": "false",
                "INFRAHAUS_LOG_LEVEL": "WARNING",
                # `/metrics` on the API port answers only with this token (404 without one).
                "INFRAHAUS_METRICS_TOKEN": METRICS_TOKEN,
            }
            port = free_port()
            async with (
                _api_server(env, port, workers) as base_url,
                httpx.AsyncClient(base_url=base_url, timeout=10.0) as client,
            ):
                node_id = await _setup(client, node)
                cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
                # A short warm-up so connection set-up and first-request costs stay out of the numbers.
                await _drive(port, cookie, node_id, rate, 1.0)
                before = await _route_buckets(client)
                proxmox_requests = len(node.requests)
                latencies, errors = await _drive(port, cookie, node_id, rate, duration)
                after = await _route_buckets(client)
                during = len(node.requests) - proxmox_requests

    _out(f"GET {ROUTE} at {rate:g} req/s for {duration:g} s: {len(latencies)} requests, {errors} errors")
    if latencies:
        _out(f"  client-side  p50 {statistics.median(latencies):7.2f} ms   p99 {_percentile(latencies, 0.99):7.2f} ms")
    server_p50 = server_p99 = None
    if before is not None and after:
        server_p50 = _histogram_quantile(before, after, 0.50)
        server_p99 = _histogram_quantile(before, after, 0.99)
    if server_p50 is None or server_p99 is None:
        _out("  server-side  not available (the API exposes no request-duration histogram on /metrics)")
    else:
        _out(f"  server-side  p50 {server_p50:7.2f} ms   p99 {server_p99:7.2f} ms   (from /metrics histogram buckets)")
        verdict = "meets" if server_p99 <= TARGET_P99_MS else "MISSES"
        _out(f"  target p99 <= {TARGET_P99_MS:g} ms server-side: {verdict}")
    _out(f"  Proxmox requests while the cache was warm: {during}")
    return 0 if errors == 0 and during == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10, at most 60)")
    parser.add_argument("--workers", type=int, default=1, help="API server processes (default 1)")
    args = parser.parse_args()
    if not 0 < args.rate <= 1000 or not 0 < args.duration <= 60 or not 1 <= args.workers <= 8:
        parser.error("--rate must be in (0, 1000], --duration in (0, 60], --workers in [1, 8]")
    return asyncio.run(run(args.rate, args.duration, args.workers))


if __name__ == "__main__":
    sys.exit(main())
