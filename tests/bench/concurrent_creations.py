"""Benchmark: 20 concurrent container creations on the simulator (target: makespan <= 1.5 x one creation).

Everything on loopback, in the shape of a deployment: a fresh PostgreSQL database and Redis key prefix, the
Proxmox simulator as its own process (`infrahaus pvesim`, Proxmox-like task durations), one worker process
(`infrahaus worker --processes 1 --threads COUNT`), and the API app in this process (in-process ASGI) sending
through Redis. Creates one container from the `web-hello` example template and times it, then `--count` at
once and times the makespan (first request to last terminal operation). Prints both and the ratio.

Not a test: `uv run python -m tests.bench.concurrent_creations [--count 20] [--task-duration 2.0]`.
Needs PostgreSQL and Redis on 127.0.0.1 (the test suite's).
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from infrahaus_api.app import create_app
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
from infrahaus_proxmox import ProxmoxUnreachable, fetch_certificate
from infrahaus_pvesim.config import DEMO_PASSWORD, DEMO_TOKEN_ID, DEMO_TOKEN_SECRET
from tests.fixtures.api import create_user_with_token
from tests.fixtures.dev import free_port
from tests.fixtures.services import REDIS_BASE_URL as REDIS_URL
from tests.fixtures.services import pg_url_for, temporary_database, temporary_redis_prefix

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TARGET_RATIO = 1.5


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    async with app.lifespan():
        yield


async def _wait_all(http: httpx.AsyncClient, op_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(op_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(op_ids) - len(done)} creations still unfinished after {timeout:g}s")
        for op_id in op_ids:
            if op_id in done:
                continue
            op = (await http.get(f"/api/operations/{op_id}")).json()
            if op["status"] in ("succeeded", "failed", "cancelled"):
                done[op_id] = op
        await asyncio.sleep(0.5)
    return done


async def _create(http: httpx.AsyncClient, template_id: str, vmid: int) -> str:
    response = await http.post(
        "/api/containers", json={"hostname": f"bench-{vmid}", "template_id": template_id, "vmid": vmid}
    )
    response.raise_for_status()
    op_id: str = response.json()["operation"]["id"]
    return op_id


@contextlib.contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "infrahaus.cli", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def _group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in a process group, plus what they reaped of their children
    (the simulator's sandboxed container commands), from /proc."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        # After the command name: state, ppid, pgrp, ..., utime (14th field of the line), stime, cutime, cstime.
        if int(fields[2]) == pgid:
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


async def _fingerprint(port: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            return (await fetch_certificate("127.0.0.1", port)).fingerprint_sha256
        except ProxmoxUnreachable:  # the simulator is still starting
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def run(count: int, task_duration: float) -> float:
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
            sessions=SessionSettings(cookie_secure=False),
            logging=LogSettings(level="WARNING", format="text"),
            templates_dir=TEMPLATES_DIR,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
        env.update(
            {
                "INFRAHAUS_DATABASE_URL": database_url,
                "INFRAHAUS_REDIS_URL": REDIS_URL,
                "INFRAHAUS_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
                "INFRAHAUS_REDIS_PREFIX": prefix,
                "INFRAHAUS_ENCRYPTION_KEYS": format_key(key),
                "INFRAHAUS_LOG_LEVEL": "WARNING",
                "INFRAHAUS_LOG_FORMAT": "text",
            }
        )
        api_port, ssh_port = free_port(), free_port()
        sim_argv = ["pvesim", "--port", str(api_port), "--ssh-port", str(ssh_port)]
        sim_argv += ["--task-duration", str(task_duration), "--data-dir", str(Path(tmp) / "pvesim")]
        worker_argv = ["worker", "--processes", "1", "--threads", str(count)]
        with (
            _process(sim_argv, env, Path(tmp) / "pvesim.log") as simulator,
            _process(worker_argv, env, Path(tmp) / "worker.log") as worker,
        ):
            node = {
                "name": "pve",
                "host": "127.0.0.1",
                "port": api_port,
                "token_id": DEMO_TOKEN_ID,
                "token_secret": DEMO_TOKEN_SECRET,
                "tls_fingerprint": await _fingerprint(api_port),
                "ssh_port": ssh_port,
                "ssh_username": "root",
                "ssh_password": DEMO_PASSWORD,
            }
            app = create_app(settings)
            async with _lifespan(app):
                _, token = await create_user_with_token(settings, "bench@pve")
                transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
                async with httpx.AsyncClient(
                    transport=transport,
                    base_url="http://bench",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                ) as http:
                    (await http.post("/api/nodes", json=node)).raise_for_status()
                    (await http.post("/api/templates/discover")).raise_for_status()
                    items = (await http.get("/api/templates", params={"q": "web-hello"})).json()["items"]
                    template_id = next(t["id"] for t in items if t["name"] == "web-hello")

                    started = time.monotonic()
                    single = await _wait_all(http, [await _create(http, template_id, 200)], timeout=600)
                    one = time.monotonic() - started

                    started = time.monotonic()
                    cpu_before = _group_cpu_seconds(worker.pid), _group_cpu_seconds(simulator.pid)
                    op_ids = await asyncio.gather(*(_create(http, template_id, 300 + i) for i in range(count)))
                    results = await _wait_all(http, list(op_ids), timeout=600)
                    makespan = time.monotonic() - started
                    worker_cpu = _group_cpu_seconds(worker.pid) - cpu_before[0]
                    simulator_cpu = _group_cpu_seconds(simulator.pid) - cpu_before[1]
    failed = [op for op in [*single.values(), *results.values()] if op["status"] != "succeeded"]
    ratio = makespan / one
    print(f"one creation:              {one:6.2f} s")  # noqa: T201
    print(f"{count} concurrent creations: {makespan:6.2f} s (makespan)")  # noqa: T201
    print(f"ratio:                     {ratio:6.2f} x   (target <= {TARGET_RATIO})")  # noqa: T201
    # The worker's own cost, apart from the simulator's (which a real node pays on its own CPUs).
    print(f"worker CPU per creation:   {worker_cpu / count:6.2f} s")  # noqa: T201
    print(f"simulator CPU per creation: {simulator_cpu / count:5.2f} s")  # noqa: T201
    print(f"machine: 2 CPUs, 1-minute load average {os.getloadavg()[0]:.1f} at the end")  # noqa: T201
    if failed:
        print(f"FAILED operations: {[(op['id'], op['error']) for op in failed]}")  # noqa: T201
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20)
    # Real create tasks unpack a template for many seconds; 2 s keeps the run short but the shape realistic.
    parser.add_argument("--task-duration", type=float, default=2.0, help="seconds per simulated Proxmox task")
    args = parser.parse_args(argv)
    # Request logs of 20 pollers would cost the CPU the creations compete for.
    logging.disable(logging.INFO)
    ratio = asyncio.run(run(args.count, args.task_duration))
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
