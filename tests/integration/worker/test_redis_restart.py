"""Redis restarted in the middle of a creation: the operation is not lost, it still reaches `ready`.

Uses a private redis-server (the shared one must never be restarted by a test)."""

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from infrahaus_domain.settings import Settings
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import container, operation, request_container
from tests.integration.worker.test_faults import SLOW_SCRIPT, wait_for_step


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


@pytest.fixture
def settings(settings: Settings, private_redis: PrivateRedis) -> Settings:
    return settings.replace(redis={"url": private_redis.url})


async def test_creation_survives_a_redis_restart(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    private_redis: PrivateRedis,
) -> None:
    template_id = await make_template("redis-blip", scripts=[("10-slow", SLOW_SCRIPT), ("20-next", "echo next\n")])
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=146)
    creation = asyncio.create_task(create_container(worker_ctx, op_id))
    await wait_for_step(worker_ctx, op_id, "scripts")
    private_redis.kill()  # everything in it is gone: buffered lines, sequence counters, pub/sub
    await asyncio.sleep(0.5)
    private_redis.start()
    await asyncio.wait_for(creation, 60)

    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "ready"
