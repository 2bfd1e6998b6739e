"""A script that prints hundreds of megabytes keeps the worker within its memory target and the live log bounded.

The worker runs in a child process of its own (the real `container.create` actor against the simulator, PostgreSQL
and Redis), so its peak resident set size is its own: measured with `getrusage` right before the creation and
after it. The script prints ~210 MB: 1,500 lines of 100 KB, 5,000 lines of 8 KB, and one 20 MB line without a
newline.
"""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from infrahaus_domain.crypto import format_key
from infrahaus_domain.events.logbuffer import MAX_LINE_CHARS
from infrahaus_domain.settings import Settings
from infrahaus_proxmox.pct import MAX_LINE_BYTES
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import operation, request_container

REPO = Path(__file__).resolve().parents[3]
# The worker's memory limit in deploy/k8s/worker.yaml is 512 MiB; one creation may add this much at most.
GROWTH_LIMIT_MIB = 64

FLOOD = """#!/bin/bash
long=$(head -c 100000 /dev/zero | tr '\\0' y)
for i in $(seq 1500); do printf '%s\\n' "$long"; done
yes "$(head -c 8000 /dev/zero | tr '\\0' x)" | head -n 5000
head -c 20000000 /dev/zero | tr '\\0' z
echo
echo flood-finished
"""

CHILD = r"""
import asyncio, json, os, resource, sys

from dramatiq.brokers.stub import StubBroker
from infrahaus_domain.settings import Settings
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.context import WorkerContext


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    ctx = await WorkerContext.open(Settings.from_env(os.environ), StubBroker(middleware=[]))
    try:
        before = peak_mib()
        await create_container(ctx, sys.argv[1])
        print(json.dumps({"before": before, "after": peak_mib()}))
    finally:
        await ctx.aclose()


asyncio.run(main())
"""


def worker_env(settings: Settings) -> dict[str, str]:
    assert settings.redis.url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    env.update(
        {
            "INFRAHAUS_DATABASE_URL": settings.database.url,
            "INFRAHAUS_REDIS_URL": settings.redis.url,
            "INFRAHAUS_REDIS_PREFIX": settings.redis.prefix,
            "INFRAHAUS_ENCRYPTION_KEYS": ",".join(format_key(k) for k in settings.encryption.keys),
            "INFRAHAUS_OUTBOUND_ALLOW": ",".join(settings.outbound.allow),
            "INFRAHAUS_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


@pytest.mark.usefixtures("registered_node")
async def test_a_flooding_script_keeps_the_worker_within_its_memory_and_the_log_bounded(
    settings: Settings, worker_ctx: WorkerContext, user_client: UserClient, make_template: Any
) -> None:
    template_id = await make_template("flood", scripts=[("flood", FLOOD)])
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=180)
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHILD, op_id],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rss = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (await operation(worker_ctx, op_id)).status == "succeeded"
    assert rss["after"] - rss["before"] < GROWTH_LIMIT_MIB, rss
    assert rss["after"] < 512, rss

    lines = await worker_ctx.logbuffer.lines(uuid.UUID(container_id))
    texts = [line.line for line in lines if line.script == "flood"]
    assert all(len(text) <= MAX_LINE_CHARS + 80 for text in texts)
    assert any(text.endswith("more bytes of this line cut]") for text in texts)
    assert any("of output left out]" in text for text in texts)
    assert texts[-1] == "flood-finished"
    assert sum(len(text) for text in texts) < 4 * 1024 * 1024
    z_line = next(text for text in texts if text.startswith("zzz"))
    assert z_line.startswith("z" * MAX_LINE_BYTES)
    assert f"{20_000_000 - MAX_LINE_BYTES} more bytes of this line cut" in z_line
