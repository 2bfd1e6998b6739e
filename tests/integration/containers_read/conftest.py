"""Read-side container tests: three simulated nodes registered for `user_client`, containers written straight into
the database (as the worker leaves them) with matching guests on the simulated nodes.

The inventory cache is off unless a test turns it on, so every read asks the nodes.
"""

import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.models.containers import Container, DiscoveredService, Operation, ServiceCredential
from infrahaus_domain.settings import Settings
from infrahaus_pvesim import RunningNode, SimNodeConfig, Simulator, SimulatorConfig
from infrahaus_pvesim.state import SimGuest
from tests.fixtures.api import UserClient
from tests.fixtures.nodes import node_body

NODE_NAMES = ("pve1", "pve2", "pve3")
MIB = 1024 * 1024


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name=n) for n in NODE_NAMES],
        task_duration=0.02,
    )


@pytest.fixture
def read_settings() -> dict[str, Any]:
    """Overrides of the test settings; tests change them with `@pytest.mark.parametrize` or by overriding."""
    return {"inventory": {"cache_seconds": 0.0, "node_timeout": 1.0}}


@pytest.fixture
def settings(settings: Settings, read_settings: dict[str, Any]) -> Settings:
    return settings.replace(**read_settings)


@pytest.fixture
def box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption.keys)


@dataclass
class Fleet:
    """The simulated nodes and their ids as registered for `user_client`."""

    sim: Simulator
    node_ids: dict[str, uuid.UUID]

    def node(self, name: str) -> RunningNode:
        return self.sim.node(name)


@pytest.fixture
async def fleet(simulator: Simulator, simulator_config: SimulatorConfig, user_client: UserClient) -> Fleet:
    ids: dict[str, uuid.UUID] = {}
    for name in NODE_NAMES:
        response = await user_client.http.post("/api/nodes", json=node_body(simulator.node(name), simulator_config))
        assert response.status_code == 201, response.text
        ids[name] = uuid.UUID(response.json()["id"])
    return Fleet(sim=simulator, node_ids=ids)


def put_guest(node: RunningNode, vmid: int, status: str = "running", **config: str) -> SimGuest:
    """A container on the simulated node as a finished creation leaves it."""
    guest = SimGuest(
        vmid=vmid,
        type="lxc",
        config={
            "hostname": f"ct{vmid}",
            "ostype": "debian",
            "arch": "amd64",
            "cores": "2",
            "memory": "1024",
            "swap": "256",
            "rootfs": f"local-lvm:vm-{vmid}-disk-0,size=8G",
            "net0": f"name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:{vmid % 256:02X}:00,ip=192.0.2.{vmid % 250}/24,"
            "gw=192.0.2.1,type=veth",
            "features": "nesting=1,keyctl=1",
            "onboot": "1",
            "tags": "web;prod",
            **config,
        },
        status=status,  # type: ignore[arg-type]
    )
    if status == "running":
        guest.started_at = datetime.now(UTC).timestamp() - 120
    node.state.guests[vmid] = guest
    return guest


_clock = itertools.count()

AddContainer = Callable[..., Awaitable[Container]]


@pytest.fixture
def add_container(db: async_sessionmaker[AsyncSession], fleet: Fleet, user_client: UserClient) -> AddContainer:
    """`await add_container("pve1", 200, status="running", ...)`: a container row of `user_client` (and, unless
    `guest=False`, its guest on the node). Rows get increasing `created_at` in call order."""
    base = datetime.now(UTC) - timedelta(days=1)

    async def add(
        node: str,
        vmid: int,
        *,
        status: str = "running",
        guest: bool = True,
        lifecycle: str = "ready",
        hostname: str | None = None,
        ip_address: str | None = None,
        template_id: uuid.UUID | None = None,
        user_id: uuid.UUID | None = None,
        node_id: uuid.UUID | None = None,
        created_at: datetime | None = None,
    ) -> Container:
        if guest:
            put_guest(fleet.node(node), vmid, status)
        container = Container(
            user_id=user_id or user_client.user_id,
            node_id=node_id or fleet.node_ids[node],
            vmid=vmid,
            hostname=hostname or f"ct{vmid}",
            template_id=template_id,
            lifecycle=lifecycle,
            ip_address=ip_address,
            request={},
        )
        container.created_at = created_at or base + timedelta(seconds=next(_clock))
        async with db() as session:
            session.add(container)
            await session.commit()
        return container

    return add


async def add_operation(
    db: async_sessionmaker[AsyncSession], container: Container, kind: str, status: str = "running"
) -> Operation:
    op = Operation(container_id=container.id, user_id=container.user_id, kind=kind, status=status)
    async with db() as session:
        session.add(op)
        await session.commit()
    return op


async def add_services(
    db: async_sessionmaker[AsyncSession],
    box: SecretBox,
    container: Container,
    services: list[dict[str, Any]],
    credentials: dict[str, dict[str, str]],
) -> None:
    """Discovered services and encrypted credentials, as discovery stores them."""
    async with db() as session:
        for service in services:
            session.add(DiscoveredService(container_id=container.id, **service))
        for name, pairs in credentials.items():
            for key, value in pairs.items():
                session.add(
                    ServiceCredential(container_id=container.id, service=name, key=key, value=box.encrypt(value))
                )
        stored = await session.get(Container, container.id)
        assert stored is not None
        stored.services_discovered_at = datetime.now(UTC)
        await session.commit()
