"""Benchmark: mixed reads and VMID checks at a fixed rate against the production processes (targets: README.md,
Performance).

Everything on loopback: a fresh PostgreSQL database, a Redis key prefix, `infrahaus pvesim` (one node, its own
process), `infrahaus api --workers 2` and `infrahaus worker`. A user with a bearer token registers the node,
discovers the example templates and creates a few containers. Then requests are sent open-loop at `--rate` per
second for `--duration` seconds (request i leaves at start + i/rate whatever earlier ones are doing; its client
latency counts from that scheduled instant, so a stalled server cannot hide queueing): half are VMID checks
(`GET /api/nodes/{id}/vmids/{vmid}`), the rest split over `GET /api/nodes`, `/api/templates`, `/api/containers`
and `/api/operations`. Meanwhile `--creations` containers are created (in two waves) so the worker is busy too.

Server-side latency is the API's own `Server-Timing: app;dur=<ms>` header. Resident memory of every API process
(uvicorn's supervisor and its workers) and every worker process (dramatiq's supervisor and its workers) is read
from /proc once a second; the maximum per process is reported.

Prints the figures and writes them to `bench-results/load.json`. Not a test:
`uv run python -m tests.bench.load [--rate 200] [--duration 60]`. Needs PostgreSQL and Redis on 127.0.0.1.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from infrahaus_domain import migrations
from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.settings import DatabaseSettings, EncryptionSettings, OutboundSettings, RedisSettings, Settings
from infrahaus_proxmox import fetch_certificate
from infrahaus_proxmox.errors import ProxmoxError
from infrahaus_pvesim.config import DEMO_PASSWORD, DEMO_SSH_USER, DEMO_TOKEN_ID, DEMO_TOKEN_SECRET
from tests.fixtures.api import create_user_with_token
from tests.fixtures.dev import free_port
from tests.fixtures.processes import Processes, process_tree_cpu, process_tree_rss, wait_live
from tests.fixtures.services import REDIS_BASE_URL as REDIS_URL
from tests.fixtures.services import pg_url_for, temporary_database, temporary_redis_prefix

RESULTS = Path("bench-results") / "load.json"
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TARGET_VMID_P99_MS = 5.0
TARGET_API_MB = 150.0
TARGET_WORKER_MB = 200.0
MB = 1024 * 1024
# Seconds after the last scheduled send that answers are still waited for.
GRACE_S = 15.0
# Four clients with this many keep-alive connections each.
CONNECTIONS_PER_CLIENT = 8
VMID = "GET /api/nodes/{id}/vmids/{vmid}"
# Route mix: every 8 requests, 4 VMID checks and one of each read.
MIX = [VMID, "GET /api/nodes", VMID, "GET /api/templates", VMID, "GET /api/containers", VMID, "GET /api/operations"]
_SERVER_TIMING = re.compile(r"app;dur=([0-9.]+)")


@dataclass
class RouteStats:
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass
class MemoryPeaks:
    """Largest RSS seen per process (keyed by pid, labelled by command line) of one process tree."""

    peaks: dict[int, tuple[str, int]] = field(default_factory=dict)

    def sample(self, root: int) -> None:
        for pid, (label, rss) in process_tree_rss(root).items():
            if rss > self.peaks.get(pid, ("", 0))[1]:
                self.peaks[pid] = (label, rss)

    def max_mb(self) -> float:
        return max((rss for _, rss in self.peaks.values()), default=0) / MB

    def report(self) -> list[dict[str, Any]]:
        return [
            {"pid": pid, "process": label, "max_rss_mb": round(rss / MB, 1)}
            for pid, (label, rss) in sorted(self.peaks.items())
        ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _fingerprint(port: int, timeout: float = 60) -> str:
    """The simulator node's certificate fingerprint, once its HTTPS port answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return (await fetch_certificate("127.0.0.1", port, timeout=2)).fingerprint_sha256
        except (ProxmoxError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _wait_operations(http: httpx.AsyncClient, op_ids: list[str], timeout: float) -> dict[str, str]:
    """Poll operations until all are terminal; op id -> final status ("unfinished" after `timeout`)."""
    deadline = time.monotonic() + timeout
    done: dict[str, str] = {}
    while len(done) < len(op_ids) and time.monotonic() < deadline:
        for op_id in op_ids:
            if op_id not in done:
                status = (await http.get(f"/api/operations/{op_id}")).json()["status"]
                if status in ("succeeded", "failed", "cancelled"):
                    done[op_id] = status
        await asyncio.sleep(1.0)
    return {op_id: done.get(op_id, "unfinished") for op_id in op_ids}


async def _create(http: httpx.AsyncClient, template_id: str, vmid: int) -> str:
    response = await http.post(
        "/api/containers", json={"hostname": f"load-{vmid}", "template_id": template_id, "vmid": vmid}
    )
    response.raise_for_status()
    op_id: str = response.json()["operation"]["id"]
    return op_id


async def _drive(
    clients: list[httpx.AsyncClient], node_id: str, rate: float, duration: float
) -> tuple[dict[str, RouteStats], float]:
    """Open-loop load over the route mix; returns per-route figures and the wall time until the last answer."""
    stats = {route: RouteStats() for route in dict.fromkeys(MIX)}
    paths = {
        "GET /api/nodes": "/api/nodes",
        "GET /api/templates": "/api/templates",
        "GET /api/containers": "/api/containers",
        "GET /api/operations": "/api/operations",
    }

    async def one(i: int, scheduled: float) -> None:
        route = MIX[i % len(MIX)]
        path = f"/api/nodes/{node_id}/vmids/{100 + i % 400}" if route == VMID else paths[route]
        entry = stats[route]
        try:
            # Wait for a free connection here: a deep queue inside httpx's pool costs it O(n^2) CPU.
            async with slots:
                response = await clients[i % len(clients)].get(path)
        except httpx.HTTPError as exc:
            # An overloaded server shows as failed requests in the report, not as a crashed benchmark.
            entry.errors += 1
            entry.statuses[type(exc).__name__] = entry.statuses.get(type(exc).__name__, 0) + 1
            return
        entry.client_ms.append((time.perf_counter() - scheduled) * 1000)
        entry.statuses[str(response.status_code)] = entry.statuses.get(str(response.status_code), 0) + 1
        if response.status_code != 200:
            entry.errors += 1
        timing = _SERVER_TIMING.search(response.headers.get("server-timing", ""))
        if timing:
            entry.server_ms.append(float(timing.group(1)))

    slots = asyncio.Semaphore(CONNECTIONS_PER_CLIENT * len(clients))
    total = int(rate * duration)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    # Bounded in time: whatever is still unanswered shortly after the schedule ends counts as an error.
    _, pending = await asyncio.wait(tasks, timeout=GRACE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for i, task in enumerate(tasks):
        if task in pending:
            entry = stats[MIX[i % len(MIX)]]
            entry.errors += 1
            entry.statuses["unanswered"] = entry.statuses.get("unanswered", 0) + 1
    return stats, time.perf_counter() - start


async def _sample_memory(api: MemoryPeaks, api_pid: int, worker: MemoryPeaks, worker_pid: int) -> None:
    while True:
        api.sample(api_pid)
        worker.sample(worker_pid)
        await asyncio.sleep(1.0)


async def run(rate: float, duration: float, api_workers: int, creations: int, seed_containers: int) -> int:
    with (
        temporary_database("bench") as database_name,
        temporary_redis_prefix(REDIS_URL, "bench") as prefix,
        tempfile.TemporaryDirectory() as tmp,
    ):
        database_url = pg_url_for(database_name)
        engine = create_engine(database_url)
        await migrations.upgrade(engine)
        await engine.dispose()
        key = generate_key("bench")
        settings = Settings(
            database=DatabaseSettings(url=database_url),
            redis=RedisSettings(url=REDIS_URL, prefix=prefix),
            encryption=EncryptionSettings(keys=(key,)),
            outbound=OutboundSettings(allow=("127.0.0.0/8", "::1")),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
        env.update(
            {
                "INFRAHAUS_DATABASE_URL": database_url,
                "INFRAHAUS_REDIS_URL": REDIS_URL,
                "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
                "INFRAHAUS_REDIS_PREFIX": prefix,
                "INFRAHAUS_ENCRYPTION_KEYS": format_key(key),
                "INFRAHAUS_TEMPLATES_DIR": str(TEMPLATES_DIR),
                "INFRAHAUS_COOKIE_SECURE": "false",
                "INFRAHAUS_LOG_LEVEL": "WARNING",
                "INFRAHAUS_WORKER_CONCURRENCY": "4",
            }
        )
        procs = Processes(env, Path(tmp))
        try:
            sim_port, ssh_port, api_port = free_port(), free_port(), free_port()
            procs.start(
                "pvesim", "pvesim", "--port", str(sim_port), "--ssh-port", str(ssh_port),
                "--data-dir", str(Path(tmp) / "pvesim"), "--guests", "20", "--task-duration", "0.5",
            )  # fmt: skip
            fingerprint = await _fingerprint(sim_port)
            api_process = procs.start("api", "api", "--port", str(api_port), "--workers", str(api_workers))
            worker_process = procs.start("worker", "worker", "--processes", "1", "--threads", "4")
            base_url = f"http://127.0.0.1:{api_port}"
            try:
                await wait_live(f"{base_url}/health/ready", api_process, what="infrahaus api")
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{procs.log('api')[-3000:]}") from None
            _, token = await create_user_with_token(settings, "load@pve")
            headers = {"Authorization": f"Bearer {token}"}
            limits = httpx.Limits(
                max_connections=CONNECTIONS_PER_CLIENT, max_keepalive_connections=CONNECTIONS_PER_CLIENT
            )
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10.0, limits=limits)
                    )
                    for _ in range(4)
                ]
                http = clients[0]
                created = await http.post(
                    "/api/nodes",
                    json={
                        "name": "pve",
                        "host": "127.0.0.1",
                        "port": sim_port,
                        "token_id": DEMO_TOKEN_ID,
                        "token_secret": DEMO_TOKEN_SECRET,
                        "tls_fingerprint": fingerprint,
                        "ssh_port": ssh_port,
                        "ssh_username": DEMO_SSH_USER,
                        "ssh_password": DEMO_PASSWORD,
                    },
                )
                created.raise_for_status()
                node_id: str = created.json()["id"]
                (await http.post("/api/templates/discover")).raise_for_status()
                items = (await http.get("/api/templates", params={"q": "web-hello"})).json()["items"]
                template_id = next(t["id"] for t in items if t["name"] == "web-hello")
                seeded = [await _create(http, template_id, 1000 + i) for i in range(seed_containers)]
                seed_status = await _wait_operations(http, seeded, timeout=180)

                await _drive(clients, node_id, rate, 2.0)  # warm-up: connections, caches, first-request costs
                api_mem, worker_mem = MemoryPeaks(), MemoryPeaks()
                sampler = asyncio.create_task(_sample_memory(api_mem, api_process.pid, worker_mem, worker_process.pid))

                async def waves() -> list[str]:
                    ops: list[str] = []
                    # Waves start 10 % and about 50 % into the run.
                    for wave, pause in enumerate((0.1, 0.4)):
                        await asyncio.sleep(duration * pause)
                        count = creations // 2 if wave == 0 else creations - creations // 2
                        ops += await asyncio.gather(
                            *(_create(http, template_id, 2000 + wave * 100 + i) for i in range(count))
                        )
                    return ops

                wave_task = asyncio.create_task(waves())
                cpu_before = process_tree_cpu(api_process.pid)
                stats, elapsed = await _drive(clients, node_id, rate, duration)
                api_cpu = process_tree_cpu(api_process.pid) - cpu_before
                creation_ops = await wave_task
                creation_status = await _wait_operations(http, creation_ops, timeout=180)
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
                api_mem.sample(api_process.pid)
                worker_mem.sample(worker_process.pid)
            for name in ("api", "worker"):
                if procs.running[name].poll() is not None:
                    raise RuntimeError(f"{name} exited during the run:\n{procs.log(name)[-3000:]}")
        finally:
            procs.stop_all()

    return _report(
        rate, duration, api_workers, stats, elapsed, api_cpu, api_mem, worker_mem, seed_status, creation_status
    )


def _report(
    rate: float,
    duration: float,
    api_workers: int,
    stats: dict[str, RouteStats],
    elapsed: float,
    api_cpu: float,
    api_mem: MemoryPeaks,
    worker_mem: MemoryPeaks,
    seed_status: dict[str, str],
    creation_status: dict[str, str],
) -> int:
    answered = sum(len(s.client_ms) for s in stats.values())
    errors = sum(s.errors for s in stats.values())
    routes: dict[str, dict[str, Any]] = {}
    _out(f"mixed load at {rate:g} req/s for {duration:g} s against infrahaus api --workers {api_workers}")
    _out(f"  {answered} answered in {elapsed:.1f} s = {answered / elapsed:.1f} req/s, {errors} errors")
    _out(
        f"  {'route':36} {'count':>6} {'err':>4} "
        + " ".join(f"{h:>11}" for h in ("client p50", "client p99", "server p50", "server p99"))
    )
    for route, s in stats.items():
        row: dict[str, Any] = {"count": len(s.client_ms) + s.errors, "errors": s.errors, "statuses": s.statuses}
        for side, values in (("client", s.client_ms), ("server", s.server_ms)):
            for q in (0.5, 0.99):
                row[f"{side}_p{round(q * 100)}_ms"] = round(_percentile(values, q), 2) if values else None
        routes[route] = row
        cells = [row[k] for k in ("client_p50_ms", "client_p99_ms", "server_p50_ms", "server_p99_ms")]
        shown = " ".join(f"{c:8.2f} ms" if c is not None else f"{'-':>11}" for c in cells)
        _out(f"  {route:36} {row['count']:6d} {s.errors:4d} {shown}")
    vmid_p99 = routes[VMID]["server_p99_ms"]
    cpu_ms = api_cpu * 1000 / max(1, answered)
    _out("  client latency counts from each request's scheduled send time (open loop)")
    _out(f"  API processes used {api_cpu:.1f} CPU s = {cpu_ms:.1f} ms per answered request (all routes)")
    _out(f"  machine: {os.cpu_count()} CPUs, 1-minute load average {os.getloadavg()[0]:.1f}")
    _out("memory (max RSS per process, sampled every second):")
    for label, mem in (("api", api_mem), ("worker", worker_mem)):
        for row in mem.report():
            _out(f"  {label:6} pid {row['pid']:>7} {row['max_rss_mb']:7.1f} MB  {row['process']}")
    seeded_ok = sum(1 for s in seed_status.values() if s == "succeeded")
    created_ok = sum(1 for s in creation_status.values() if s == "succeeded")
    _out(f"containers: {seeded_ok}/{len(seed_status)} created before the run, ")
    _out(f"            {created_ok}/{len(creation_status)} created during it")

    figures = [
        _figure("load: errors", f"{errors} of {answered + errors}", "0 errors", errors == 0),
        _figure(
            f"load: VMID check p99 server-side at {rate:g} req/s",
            f"{vmid_p99:.2f} ms" if vmid_p99 is not None else "n/a",
            f"≤ {TARGET_VMID_P99_MS:g} ms",
            vmid_p99 is not None and vmid_p99 <= TARGET_VMID_P99_MS,
        ),
        _figure(
            "load: API RSS, max process",
            f"{api_mem.max_mb():.0f} MB",
            f"≤ {TARGET_API_MB:g} MB",
            api_mem.max_mb() <= TARGET_API_MB,
        ),
        _figure(
            "load: worker RSS, max process",
            f"{worker_mem.max_mb():.0f} MB",
            f"≤ {TARGET_WORKER_MB:g} MB",
            worker_mem.max_mb() <= TARGET_WORKER_MB,
        ),
        _figure("load: API CPU per request (all routes)", f"{cpu_ms:.1f} ms", "-", None),
        _figure(
            "load: throughput",
            f"{answered / elapsed:.1f} req/s",
            f"{rate:g} req/s offered",
            answered / elapsed >= 0.95 * rate,
        ),
    ]
    for f in figures:
        verdict = "-" if f["met"] is None else ("met" if f["met"] else "MISSED")
        _out(f"  {f['what']}: {f['value']} (target {f['target']}): {verdict}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "name": "load",
                "rate": rate,
                "duration_s": duration,
                "api_workers": api_workers,
                "answered": answered,
                "errors": errors,
                "elapsed_s": round(elapsed, 2),
                "throughput_rps": round(answered / elapsed, 1),
                "api_cpu_s": round(api_cpu, 2),
                "api_cpu_ms_per_request": round(cpu_ms, 2),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "routes": routes,
                "vmid_server_p99_ms": vmid_p99,
                "vmid_server_p50_ms": routes[VMID]["server_p50_ms"],
                "api_rss": api_mem.report(),
                "api_rss_max_mb": round(api_mem.max_mb(), 1),
                "worker_rss": worker_mem.report(),
                "worker_rss_max_mb": round(worker_mem.max_mb(), 1),
                "creations": {"before": seed_status, "during": creation_status},
                "figures": figures,
                "meets_targets": all(f["met"] is not False for f in figures),
            },
            indent=2,
        )
        + "\n"
    )
    _out(f"wrote {RESULTS}")
    failed = seeded_ok < len(seed_status) or created_ok < len(creation_status)
    return 0 if all(f["met"] is not False for f in figures) and not failed else 1


def _figure(what: str, value: str, target: str, met: bool | None) -> dict[str, Any]:
    return {"what": what, "value": value, "target": target, "met": met}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60, at most 300)")
    parser.add_argument("--api-workers", type=int, default=2, help="API server processes (default 2)")
    parser.add_argument("--creations", type=int, default=6, help="containers created during the run (default 6)")
    parser.add_argument("--seed", type=int, default=4, help="containers created before the run (default 4)")
    args = parser.parse_args()
    if not 0 < args.rate <= 1000 or not 0 < args.duration <= 300 or not 1 <= args.api_workers <= 8:
        parser.error("--rate must be in (0, 1000], --duration in (0, 300], --api-workers in [1, 8]")
    if not 0 <= args.creations <= 50 or not 0 <= args.seed <= 50:
        parser.error("--creations and --seed must be in [0, 50]")
    return asyncio.run(run(args.rate, args.duration, args.api_workers, args.creations, args.seed))


if __name__ == "__main__":
    sys.exit(main())
