"""The VMID cache in the embedded mode: SQLite and the in-memory cache adapter, against the simulator."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain import migrations
from infrahaus_domain.crypto import SecretBox, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.errors import NotFoundError
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.models.users import User
from infrahaus_domain.nodes.connection import NodeAccess
from infrahaus_domain.outbound import OutboundPolicy
from infrahaus_domain.ports.memory import MemoryCache
from infrahaus_domain.vmids.service import VmidService
from infrahaus_pvesim import RunningNode, SimNodeConfig, SimulatorConfig
from infrahaus_pvesim.config import DEMO_TOKEN_ID, DEMO_TOKEN_SECRET

BOX = SecretBox([generate_key("embedded")])
# The simulator listens on loopback.
ACCESS = NodeAccess(BOX, OutboundPolicy(loopback=True))


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0, data_dir=tmp_path / "pvesim", nodes=[SimNodeConfig(name="pve", guests=4)]
    )


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/embedded.db")
    await migrations.upgrade(engine)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture
async def node(sessions: async_sessionmaker[AsyncSession], sim_node: RunningNode) -> Node:
    async with sessions() as session, session.begin():
        user = User(auth_server="pve", userid="root@pam", display_name="root")
        session.add(user)
        await session.flush()
        node = Node(
            user_id=user.id,
            name="pve",
            host="127.0.0.1",
            port=sim_node.api_port,
            pve_node="pve",
            token_id=DEMO_TOKEN_ID,
            token_secret=BOX.encrypt(DEMO_TOKEN_SECRET),
            tls_fingerprint=sim_node.fingerprint,
        )
        session.add(node)
    return node


async def test_cache_fill_hit_invalidate_and_expiry(
    sessions: async_sessionmaker[AsyncSession], node: Node, sim_node: RunningNode
) -> None:
    cache = MemoryCache()
    async with sessions() as session:
        vmids = VmidService(session, cache=cache, access=ACCESS)
        assert (await vmids.taken(node)).taken == [100, 101, 102, 103]
        fetches = len(sim_node.requests)
        owned = await vmids.check_owned(node.user_id, node.id, 102)
        assert (owned.available, owned.reason) == (False, "taken")
        assert (await vmids.check(node, 104)).available is True
        assert len(sim_node.requests) == fetches

        await vmids.reserve(node, 104)
        reserved = await vmids.check_owned(node.user_id, node.id, 104)
        assert (reserved.available, reserved.reason) == (False, "reserved")
        assert (await vmids.next_free(node)).vmid == 105

        await vmids.invalidate(node.id)
        await vmids.check(node, 150)
        assert len(sim_node.requests) > fetches

        # Once the entry expires the cache is cold again and the next check asks the node.
        refreshed = len(sim_node.requests)
        await cache.expire(f"vmids:{node.id}", 0)
        await vmids.check(node, 150)
        assert len(sim_node.requests) > refreshed

        # Another user's node is not found.
        with pytest.raises(NotFoundError):
            await vmids.check_owned(uuid.uuid4(), node.id, 150)
