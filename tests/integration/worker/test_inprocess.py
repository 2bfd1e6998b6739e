"""The embedded mode's wiring: StubBroker, in-process dramatiq worker threads, the API's shared stores."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dramatiq.middleware import TimeLimit
from litestar import Litestar

from infrahaus_api.app import create_app
from infrahaus_domain.settings import Settings
from infrahaus_worker.broker import build_stub_broker
from infrahaus_worker.context import SharedStores
from infrahaus_worker.inprocess import InprocessWorker, start_inprocess_worker
from tests.fixtures.api import UserClient, running
from tests.integration.worker.conftest import FAST_TIMINGS
from tests.integration.worker.helpers import request_container


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Embedded mode: no Redis, so cache, locks, events, sessions and the log buffer live in process memory."""
    return settings.replace(redis={"url": None})


@pytest.fixture
async def embedded(settings: Settings) -> AsyncIterator[tuple[Litestar, InprocessWorker]]:
    """The app and an in-process worker sharing its broker, ports and log store (as `infrahaus dev` wires them)."""
    broker = build_stub_broker()
    async with running(create_app(settings, broker=broker)) as application:
        shared = SharedStores(
            ports=application.state.resources.ports, log_store=application.state.resources.logbuffer.store
        )
        worker = start_inprocess_worker(
            settings, broker, shared=shared, timings=FAST_TIMINGS, threads=2, reconcile=False
        )
        try:
            yield application, worker
        finally:
            await asyncio.to_thread(worker.stop, 30)


@pytest.fixture
def app(embedded: tuple[Litestar, InprocessWorker]) -> Litestar:
    return embedded[0]


async def test_inprocess_worker_runs_a_creation(
    embedded: tuple[Litestar, InprocessWorker],
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
) -> None:
    _, op_id, _ = await request_container(user_client, template_id=templates["web-hello"]["id"], vmid=160)
    deadline = time.monotonic() + 60
    while True:
        op = (await user_client.http.get(f"/api/operations/{op_id}")).json()
        if op["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, op
        await asyncio.sleep(0.1)
    assert op["status"] == "succeeded", op
    # The worker's log lines reached the API's buffer (the shared in-memory store).
    logs = (await user_client.http.get(f"/api/containers/{op['container_id']}/logs")).json()
    assert any("web-hello is serving" in entry["line"] for entry in logs["items"])
    # Time timings are live: the in-process worker emitted process_boot.
    _, worker = embedded
    [time_limit] = [m for m in worker.broker.middleware if isinstance(m, TimeLimit)]
    manager = time_limit.manager
    assert isinstance(manager, threading.Thread)
    assert manager.is_alive()
