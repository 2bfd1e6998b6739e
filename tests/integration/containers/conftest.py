"""Container API tests: the app (jobs go to `stub_broker`), the simulator as the node, the worker's Redis ports."""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from infrahaus_domain.events.logbuffer import LogBuffer, RedisLogStore
from infrahaus_domain.ports import Ports, build_ports
from infrahaus_domain.settings import Settings
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.state import SimGuest
from tests.fixtures.api import UserClient

DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


@pytest.fixture
async def ports(settings: Settings) -> AsyncIterator[Ports]:
    """The same Redis ports (same prefix) the app uses."""
    built = build_ports(settings.redis.url, settings.redis.prefix)
    yield built
    await built.close()


@pytest.fixture
async def logbuffer(settings: Settings, ports: Ports) -> AsyncIterator[LogBuffer]:
    """A log buffer on the app's Redis keys and event bus, as the worker would build it."""
    from redis.asyncio import Redis

    assert settings.redis.url is not None
    store = RedisLogStore(Redis.from_url(settings.redis.url), settings.redis.prefix)
    yield LogBuffer(store, ports.events)
    await store.aclose()


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
