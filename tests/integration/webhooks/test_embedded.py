"""The embedded default (`infrahaus dev`): SQLite, no Redis, the worker in the API process. A webhook's delivery is
claimed without `FOR UPDATE SKIP LOCKED` (SQLite has neither), woken through the in-memory event bus, sent signed."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar

from infrahaus_api.app import create_app
from infrahaus_domain import migrations
from infrahaus_domain.db import create_engine
from infrahaus_domain.settings import Settings
from infrahaus_worker.broker import build_stub_broker
from infrahaus_worker.context import SharedStores
from infrahaus_worker.inprocess import start_inprocess_worker
from tests.fixtures.api import UserClient, running
from tests.fixtures.webhook_receiver import Receiver
from tests.integration.worker.conftest import FAST_TIMINGS


@pytest.fixture
async def settings(settings: Settings, tmp_path: Path) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    # A long poll: the delivery below is sent because the commit woke the loop, not because it looked again.
    return settings.replace(redis={"url": None}, database={"url": url}, webhooks={"poll_interval": 60.0})


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    broker = build_stub_broker()
    async with running(create_app(settings, broker=broker)) as application:
        resources = application.state.resources
        shared = SharedStores(ports=resources.ports, log_store=resources.logbuffer.store)
        worker = start_inprocess_worker(settings, broker, shared=shared, timings=FAST_TIMINGS, threads=1)
        try:
            yield application
        finally:
            await asyncio.to_thread(worker.stop, 30)


async def test_a_delivery_in_the_embedded_mode(user_client: UserClient, receiver: Receiver) -> None:
    created = await user_client.http.post("/api/webhooks", json={"url": receiver.url("/hook")})
    assert created.status_code == 201, created.text
    receiver.secrets["/hook"] = created.json()["secret"]
    hook_id = created.json()["id"]
    # The in-process worker's loop subscribes once it has booted; its first pass finds what was queued before.
    queued = await user_client.http.post(f"/api/webhooks/{hook_id}/test")
    assert queued.status_code == 202, queued.text
    deadline = time.monotonic() + 20
    while True:
        log = (await user_client.http.get(f"/api/webhooks/{hook_id}/deliveries")).json()["items"]
        if log[0]["status"] != "pending":
            break
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.05)
    assert log[0]["status"] == "delivered", log
    [received] = receiver.on("/hook")
    assert received.verified
    assert received.message_id == queued.json()["id"]
    assert received.payload["type"] == "webhook.test"

    # A second one, queued while the loop sleeps out its 60 s poll: the commit's wake-up sends it.
    again = await user_client.http.post(f"/api/webhooks/{hook_id}/test")
    assert again.status_code == 202
    deadline = time.monotonic() + 20
    while len(receiver.on("/hook")) < 2:
        assert time.monotonic() < deadline, "the wake-up did not reach the delivery loop"
        await asyncio.sleep(0.05)
    assert receiver.on("/hook")[1].message_id == again.json()["id"]
    assert receiver.on("/hook")[1].verified
