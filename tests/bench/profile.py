"""Profile: the API's CPU per request on its hot paths, in-process (no HTTP server, no load generator).

Builds the production app (`create_app`) against a fresh PostgreSQL database and Redis key prefix, seeds a user
with a bearer token, a few nodes and containers, and calls the ASGI app directly `--requests` times per route,
sequentially: what is measured is the app's own CPU (middleware, authentication, handler, database driver,
serialization), without uvicorn, sockets or a load generator competing for the cores. CPU time (user + system of
this process, `time.process_time`) is far less disturbed by other work on the machine than wall time, so this is
the figure to compare across runs while developing.

With `--profile`, each route also runs under cProfile and its top functions (by own time and by cumulative time)
are printed and written to `bench-results/profile-<route>.txt`. Not a test:
`uv run python -m tests.bench.profile [--requests 2000] [--profile]`. Needs PostgreSQL and Redis on 127.0.0.1.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litestar import Litestar
from sqlalchemy.ext.asyncio import async_sessionmaker

from infrahaus_api.app import create_app
from infrahaus_domain import migrations
from infrahaus_domain.crypto import SecretBox, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.settings import (
    DatabaseSettings,
    EncryptionSettings,
    LogSettings,
    OutboundSettings,
    RedisSettings,
    Settings,
)
from infrahaus_domain.vmids.service import _STAMP, vmids_cache_key
from tests.fixtures.api import create_user_with_token
from tests.fixtures.services import REDIS_BASE_URL as REDIS_URL
from tests.fixtures.services import pg_url_for, temporary_database, temporary_redis_prefix

RESULTS = Path("bench-results")
NODES = 3


async def _seed(database_url: str, user_id: uuid.UUID, box: SecretBox) -> list[uuid.UUID]:
    engine = create_engine(database_url)
    ids: list[uuid.UUID] = []
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            nodes = [
                Node(
                    user_id=user_id,
                    name=f"pve{i + 1}",
                    host=f"10.0.0.{i + 1}",
                    pve_node=f"pve{i + 1}",
                    token_id="root@pam!infrahaus",
                    token_secret=box.encrypt("not-a-real-secret"),
                    tls_fingerprint="AB" * 32,
                    is_default=i == 0,
                )
                for i in range(NODES)
            ]
            session.add_all(nodes)
            await session.flush()
            ids = [n.id for n in nodes]
            for i in range(10):
                session.add(
                    Container(
                        user_id=user_id, node_id=ids[i % NODES], vmid=100 + i, hostname=f"ct{i}", lifecycle="ready",
                        request={},
                    )
                )  # fmt: skip
            await session.commit()
    finally:
        await engine.dispose()
    return ids


Call = Callable[[], Awaitable[int]]


def _caller(app: Litestar, path: str, headers: list[tuple[bytes, bytes]]) -> Call:
    path, _, query = path.partition("?")
    scope_base: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def call() -> int:
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(scope_base), receive, send)  # type: ignore[arg-type]
        return status

    return call


async def _measure(name: str, call: Call, requests: int, profile: bool) -> dict[str, Any]:
    for _ in range(50):  # warm-up: connections, statement caches, first-request costs
        if (status := await call()) != 200:
            raise RuntimeError(f"{name}: status {status}")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await call()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result: dict[str, Any] = {
        "route": name,
        "requests": requests,
        "cpu_us_per_request": round(cpu / requests * 1e6, 1),
        "wall_us_per_request": round(wall / requests * 1e6, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if profile:
        profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for the database is not counted
        profiler.enable()
        for _ in range(requests):
            await call()
        profiler.disable()
        slug = name.replace("/", "_").replace(" ", "").replace("{", "").replace("}", "").strip("_")
        profiler.dump_stats(RESULTS / f"profile-{slug}.prof")  # for `python -m pstats` or snakeviz
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        text.write(f"# {name}: {requests} requests under cProfile (times include the profiler's own overhead)\n")
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        (RESULTS / f"profile-{slug}.txt").write_text(text.getvalue())
        result["profile"] = str(RESULTS / f"profile-{slug}.txt")
    return result


async def run(requests: int, profile: bool, only: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    results: list[dict[str, Any]] = []
    with temporary_database("bench") as database_name, temporary_redis_prefix(REDIS_URL, "bench") as prefix:
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
            logging=LogSettings(level="WARNING"),
        )
        user_id, token = await create_user_with_token(settings, "bench@pve")
        node_ids = await _seed(database_url, user_id, SecretBox((key,)))
        app = create_app(settings)
        bearer = [(b"authorization", f"Bearer {token}".encode())]
        routes = {
            "GET /api/nodes": "/api/nodes",
            "GET /api/nodes/{id}/vmids/{vmid}": f"/api/nodes/{node_ids[0]}/vmids/150",
            "GET /api/operations": "/api/operations",
            "GET /api/templates": "/api/templates",
            "GET /health/live": "/health/live",
        }
        async with app.lifespan():
            # The node's VMID cache, as a refresh from the node leaves it (the check reads it, never the node).
            stamp = f"{_STAMP}{datetime.now(UTC).isoformat()}"
            members = [*(str(v) for v in range(100, 120)), stamp]
            await app.state.resources.ports.cache.replace_set(vmids_cache_key(node_ids[0]), members, ttl=3600)
            for name, path in routes.items():
                if path is None or (only and name not in only):
                    continue
                headers = [] if path.startswith("/health") else bearer
                results.append(await _measure(name, _caller(app, path, headers), requests, profile))
    out = sys.stdout.write
    out(f"in-process ASGI calls, {requests} per route, sequential; CPU = user + system of this process\n")
    out(f"{'route':36} {'CPU µs/req':>11} {'wall µs/req':>12} {'load 1m':>8}\n")
    for r in results:
        cpu, wall, load = r["cpu_us_per_request"], r["wall_us_per_request"], r["load_average_1m"]
        out(f"{r['route']:36} {cpu:11.0f} {wall:12.0f} {load:8.2f}\n")
    figures = [
        {
            "what": f"{r['route']}: the app's CPU per request, in-process (no server, no client)",
            "value": f"{r['cpu_us_per_request']:.0f} µs (load {r['load_average_1m']:.1f})",
            "target": "-",
            "met": None,
        }
        for r in results
    ]
    document = {"name": "profile", "routes": results, "figures": figures}
    (RESULTS / "profile.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="calls per route (default 2000)")
    parser.add_argument("--profile", action="store_true", help="also run each route under cProfile")
    parser.add_argument("--only", nargs="+", help="route names, e.g. 'GET /api/nodes'")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be in [1, 100000]")
    import uvloop

    return uvloop.run(run(args.requests, args.profile, args.only or []))


if __name__ == "__main__":
    sys.exit(main())
