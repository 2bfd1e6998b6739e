"""Benchmark: authenticated `GET /api/nodes` (bearer token, a few nodes) against the floors of its own stack.

Three servers, one at a time, each ONE process under uvicorn with the settings of `infrahaus api`
(`infrahaus.commands.api.server_options`: uvloop, httptools, no access log):

- `bare`: a Litestar app with one `@get` handler returning a small JSON object (the framework's floor);
- `sql`: a Litestar app whose handler runs the same single SQL statement `GET /api/nodes` needs, through the
  same engine and driver (SQLAlchemy Core over psycopg, one pooled connection in autocommit), and returns the rows
  (the stack's floor);
- `api`: `infrahaus api --workers 1` against PostgreSQL and Redis, the caller authenticated by a bearer token.

Each is loaded by `wrk` (a C load generator: it takes far less CPU than the server it measures) with `--connections`
keep-alive connections for `--duration` seconds, after a warm-up. Two figures per server: requests per second (what
the targets are stated in) and the server's own CPU time per request, read from /proc (user + system of the server
process). On a machine shared with other work the first moves with the load average, the second much less: the
ratio of CPU per request is the figure to compare across runs; a quiet machine makes both agree.

Prints a table and writes `bench-results/throughput.json` (figures for the record). Not a test:
`uv run python -m tests.bench.throughput [--duration 10] [--connections 16]`. Needs PostgreSQL and Redis on
127.0.0.1 (the test suite's) and `wrk` (`make bootstrap` installs it).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, get
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from infrahaus_domain import migrations
from infrahaus_domain.crypto import SecretBox, format_key, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.settings import DatabaseSettings, EncryptionSettings, OutboundSettings, RedisSettings, Settings
from tests.fixtures.api import create_user_with_token
from tests.fixtures.dev import free_port
from tests.fixtures.processes import Processes, process_tree_cpu, wait_live
from tests.fixtures.services import REDIS_BASE_URL as REDIS_URL
from tests.fixtures.services import pg_url_for, temporary_database, temporary_redis_prefix

RESULTS = Path("bench-results") / "throughput.json"
NODES = 3
TARGET_VS_BARE = 0.25
TARGET_VS_SQL = 0.5
_WRK_REQUESTS = re.compile(r"(\d+) requests in ([0-9.]+)(m?s)")
_WRK_ERRORS = re.compile(
    r"Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


# ---------------------------------------------------------------------------------------------------------- servers


@get("/bare", sync_to_thread=False)
def bare() -> dict[str, str]:
    return {"status": "ok"}


def bare_app() -> Litestar:
    return Litestar(route_handlers=[bare], debug=False)


def sql_app() -> Litestar:
    """The same statement `GET /api/nodes` runs, for the user named in the environment, through the same driver."""
    from infrahaus_domain.nodes.service import node_list_statement

    engine: AsyncEngine = create_engine(os.environ["BENCH_DATABASE_URL"])
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    user_id = uuid.UUID(os.environ["BENCH_USER_ID"])
    statement = node_list_statement(user_id, limit=51, after=None)

    @get("/sql", sync_to_thread=False)
    async def sql() -> list[dict[str, Any]]:
        async with autocommit.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [{"id": row.id, "name": row.name, "host": row.host, "containers": row.container_count} for row in rows]

    return Litestar(route_handlers=[sql], debug=False, on_shutdown=[engine.dispose])


def serve(kind: str, port: int) -> None:
    from infrahaus.commands.api import server_options

    uvicorn.run(
        f"tests.bench.throughput:{kind}_app", factory=True, **server_options(host="127.0.0.1", port=port, workers=1)
    )


# ------------------------------------------------------------------------------------------------------------ wrk


@dataclass
class Measured:
    name: str
    requests: int
    seconds: float
    errors: int
    cpu_s: float
    load: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("inf")


def _wrk(url: str, headers: dict[str, str], connections: int, duration: float) -> tuple[int, float, int]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    match = _WRK_REQUESTS.search(out)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = float(match[2]) * (60 if match[3] == "m" else 1)
    errors = sum(int(n) for m in _WRK_ERRORS.finditer(out) for n in m.groups() if n)
    return int(match[1]), seconds, errors


def _measure(name: str, pid: int, url: str, headers: dict[str, str], connections: int, duration: float) -> Measured:
    _wrk(url, headers, connections, 2.0)  # warm-up: connections, caches, first-request costs
    cpu = process_tree_cpu(pid)
    requests, seconds, errors = _wrk(url, headers, connections, duration)
    cpu = process_tree_cpu(pid) - cpu
    return Measured(name, requests, seconds, errors, cpu, os.getloadavg()[0])


# ------------------------------------------------------------------------------------------------------------- run


async def _seed_nodes(database_url: str, user_id: uuid.UUID, box: SecretBox) -> None:
    engine = create_engine(database_url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            for index in range(NODES):
                session.add(
                    Node(
                        user_id=user_id,
                        name=f"pve{index + 1}",
                        host=f"10.0.0.{index + 1}",
                        pve_node=f"pve{index + 1}",
                        token_id="root@pam!infrahaus",
                        token_secret=box.encrypt("not-a-real-secret"),
                        tls_fingerprint="AB" * 32,
                        is_default=index == 0,
                    )
                )
            await session.commit()
    finally:
        await engine.dispose()


async def run(connections: int, duration: float, only: list[str]) -> int:
    if shutil.which("wrk") is None:
        sys.stderr.write("wrk is not installed: `make bootstrap` (or apt-get install wrk)\n")
        return 2
    measured: dict[str, Measured] = {}
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
        user_id, token = await create_user_with_token(settings, "bench@pve")
        await _seed_nodes(database_url, user_id, SecretBox((key,)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
        env.update(
            {
                "INFRAHAUS_DATABASE_URL": database_url,
                "INFRAHAUS_REDIS_URL": REDIS_URL,
                "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
                "INFRAHAUS_REDIS_PREFIX": prefix,
                "INFRAHAUS_ENCRYPTION_KEYS": format_key(key),
                "INFRAHAUS_LOG_LEVEL": "WARNING",
                "BENCH_DATABASE_URL": database_url,
                "BENCH_USER_ID": str(user_id),
            }
        )
        procs = Processes(env, Path(tmp))
        targets = [
            ("bare", ["python"], "/bare", {}),
            ("sql", ["python"], "/sql", {}),
            ("api", ["api"], "/api/nodes", {"Authorization": f"Bearer {token}"}),
        ]
        try:
            for name, kind, path, headers in targets:
                if only and name not in only:
                    continue
                port = free_port()
                if kind == ["api"]:
                    process = procs.start(name, "api", "--port", str(port), "--workers", "1")
                else:
                    log = (Path(tmp) / f"{name}.log").open("ab")
                    process = subprocess.Popen(
                        [sys.executable, "-m", "tests.bench.throughput", "--serve", name, str(port)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    log.close()
                    procs.running[name] = process
                url = f"http://127.0.0.1:{port}{path}"
                await wait_live(url if name != "api" else f"http://127.0.0.1:{port}/health/live", process, what=name)
                measured[name] = _measure(name, process.pid, url, headers, connections, duration)
                procs.kill(name, __import__("signal").SIGTERM)
        finally:
            procs.stop_all()
    return _report(measured, connections, duration)


def _report(measured: dict[str, Measured], connections: int, duration: float) -> int:
    out = sys.stdout.write
    out(f"wrk -t1 -c{connections} -d{duration:g}s, each server one uvicorn process (uvloop, httptools)\n")
    out(f"{'server':6} {'req/s':>9} {'CPU µs/req':>11} {'errors':>7} {'load 1m':>8}\n")
    for m in measured.values():
        out(f"{m.name:6} {m.rps:9.0f} {m.cpu_us:11.0f} {m.errors:7d} {m.load:8.2f}\n")
    figures: list[dict[str, Any]] = []
    api, bare_m, sql_m = measured.get("api"), measured.get("bare"), measured.get("sql")
    if api:
        figures.append(
            _figure(
                "authenticated GET /api/nodes: req/s and server CPU per request",
                f"{api.rps:.0f} req/s, {api.cpu_us:.0f} µs CPU/req (load {api.load:.1f})",
                "-",
                api.errors == 0 if api.errors else None,
            )
        )
    for reference, target, label in (
        (bare_m, TARGET_VS_BARE, "bare Litestar hello"),
        (sql_m, TARGET_VS_SQL, "bare Litestar + the same SQL"),
    ):
        if not (api and reference):
            continue
        by_rps = api.rps / reference.rps
        by_cpu = reference.cpu_us / api.cpu_us
        figures.append(
            _figure(
                f"GET /api/nodes vs {label}, req/s (wrk)",
                f"{api.rps:.0f} vs {reference.rps:.0f} = {by_rps:.2f} (load {api.load:.1f} / {reference.load:.1f})",
                f"≥ {target:g}",
                by_rps >= target,
            )
        )
        figures.append(
            _figure(
                f"GET /api/nodes vs {label}, by server CPU per request",
                f"{reference.cpu_us:.0f} / {api.cpu_us:.0f} µs = {by_cpu:.2f}",
                f"≥ {target:g}",
                by_cpu >= target,
            )
        )
    for f in figures:
        verdict = "-" if f["met"] is None else ("met" if f["met"] else "MISSED")
        out(f"  {f['what']}: {f['value']} (target {f['target']}): {verdict}\n")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "name": "throughput",
                "connections": connections,
                "duration_s": duration,
                "servers": {
                    m.name: {
                        "requests": m.requests,
                        "seconds": m.seconds,
                        "rps": round(m.rps, 1),
                        "cpu_us_per_request": round(m.cpu_us, 1),
                        "errors": m.errors,
                        "load_average_1m": round(m.load, 2),
                    }
                    for m in measured.values()
                },
                "figures": figures,
            },
            indent=2,
        )
        + "\n"
    )
    out(f"wrote {RESULTS}\n")
    return 0 if all(f["met"] is not False for f in figures) else 1


def _figure(what: str, value: str, target: str, met: bool | None) -> dict[str, Any]:
    return {"what": what, "value": value, "target": target, "met": met}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per server (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--only", nargs="+", choices=["bare", "sql", "api"], help="measure only these servers")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if not 0 < args.duration <= 120 or not 1 <= args.connections <= 256:
        parser.error("--duration must be in (0, 120], --connections in [1, 256]")
    return asyncio.run(run(args.connections, args.duration, args.only or []))


if __name__ == "__main__":
    sys.exit(main())
