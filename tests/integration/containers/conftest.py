"""Container API tests: the app with a StubBroker to inspect sent jobs, the simulator as the node, direct DB access."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_api.app import create_app
from infrahaus_domain.db import create_engine
from infrahaus_domain.events.logbuffer import LogBuffer, RedisLogStore
from infrahaus_domain.ports import Ports, build_ports
from infrahaus_domain.settings import Settings
from infrahaus_proxmox.simulator import RunningNode
from infrahaus_proxmox.simulator.state import SimGuest
from tests.fixtures.api import UserClient

DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


@pytest.fixture
def stub_broker() -> StubBroker:
    """The broker the app sends to; tests read its queues."""
    return StubBroker(middleware=[])


@pytest.fixture
async def app(settings: Settings, stub_broker: StubBroker) -> AsyncIterator[Litestar]:
    """The app sending to `stub_broker`. Its lifespan runs in a task of its own: the lifespan's task group must be
    left by the task that entered it, and pytest-asyncio sets up and tears down fixtures in different tasks."""
    application = create_app(settings, broker=stub_broker)
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with application.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    await asyncio.wait([task, asyncio.ensure_future(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    yield application
    stop.set()
    await task


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test database, outside the app (playing the worker's part)."""
    engine = create_engine(settings.database_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture
async def ports(settings: Settings) -> AsyncIterator[Ports]:
    """The same Redis ports (same prefix) the app uses."""
    built = build_ports(settings.redis_url, settings.redis_prefix)
    yield built
    await built.close()


@pytest.fixture
async def logbuffer(settings: Settings, ports: Ports) -> AsyncIterator[LogBuffer]:
    """A log buffer on the app's Redis keys and event bus, as the worker would build it."""
    from redis.asyncio import Redis

    assert settings.redis_url is not None
    store = RedisLogStore(Redis.from_url(settings.redis_url), settings.redis_prefix)
    yield LogBuffer(store, ports.events)
    await store.aclose()


def sent_jobs(broker: StubBroker) -> list[dramatiq.Message[Any]]:
    """Every message waiting in the stub broker's queues."""
    found: list[dramatiq.Message[Any]] = []
    for queue in broker.queues.values():
        found.extend(dramatiq.Message.decode(raw) for raw in list(queue.queue))
    return found


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hostname": "web-1", "os_template": DEBIAN}
    body.update(overrides)
    return body


async def create_container(client: UserClient, **overrides: Any) -> dict[str, Any]:
    response = await client.http.post("/api/containers", json=create_body(**overrides))
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def put_guest(node: RunningNode, vmid: int, status: str = "running") -> None:
    """Make a container exist on the simulated node, as a finished creation would have left it."""
    node.state.guests[vmid] = SimGuest(
        vmid=vmid,
        type="lxc",
        config={"hostname": f"ct{vmid}", "ostype": "debian", "cores": "1", "memory": "512"},
        status=status,  # type: ignore[arg-type]
    )
