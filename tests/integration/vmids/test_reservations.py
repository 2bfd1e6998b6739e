"""The reservation table lets exactly one of many concurrent creations claim a (node, vmid), on both databases."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infrahaus_domain import migrations
from infrahaus_domain.crypto import SecretBox, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.errors import ValidationFailed
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.models.users import User
from infrahaus_domain.nodes.connection import NodeAccess
from infrahaus_domain.outbound import OutboundPolicy
from infrahaus_domain.ports.memory import MemoryCache
from infrahaus_domain.vmids.errors import VmidTakenError
from infrahaus_domain.vmids.service import VmidService

BOX = SecretBox([generate_key("test")])
# The simulator listens on loopback.
ACCESS = NodeAccess(BOX, OutboundPolicy(loopback=True))
CONTENDERS = 6
ROUNDS = 20


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path}/t.db"
    engine = create_engine(url)
    await migrations.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def node(sessions: async_sessionmaker[AsyncSession]) -> Node:
    async with sessions() as session, session.begin():
        user = User(auth_server="test", userid=f"u{uuid.uuid4().hex[:8]}@pam", display_name="u")
        session.add(user)
        await session.flush()
        node = Node(
            user_id=user.id,
            name="pve",
            host="127.0.0.1",
            pve_node="pve",
            token_id="root@pam!infrahaus",
            token_secret=BOX.encrypt("secret"),
        )
        session.add(node)
    return node


def service(session: AsyncSession) -> VmidService:
    return VmidService(session, cache=MemoryCache(), access=ACCESS)


async def _claim(sessions: async_sessionmaker[AsyncSession], node: Node, vmid: int) -> bool:
    async with sessions() as session:
        try:
            await service(session).reserve(node, vmid)
        except VmidTakenError:
            await session.rollback()
            return False
        await session.commit()
        return True


async def test_concurrent_reservations_of_one_vmid_have_exactly_one_winner(
    sessions: async_sessionmaker[AsyncSession], node: Node
) -> None:
    for round_ in range(ROUNDS):
        vmid = 1000 + round_
        results = await asyncio.gather(*(_claim(sessions, node, vmid) for _ in range(CONTENDERS)))
        assert results.count(True) == 1, f"round {round_}: {results}"
    async with sessions() as session:
        rows = (await session.scalars(select(VmidReservation.vmid).where(VmidReservation.node_id == node.id))).all()
    assert sorted(rows) == list(range(1000, 1000 + ROUNDS))


async def test_release_frees_the_vmid_and_loser_transaction_stays_usable(
    sessions: async_sessionmaker[AsyncSession], node: Node
) -> None:
    async with sessions() as session:
        svc = service(session)
        reservation = await svc.reserve(node, 4242)
        assert (reservation.node_id, reservation.vmid, reservation.container_id) == (node.id, 4242, None)
        await session.commit()
    async with sessions() as session:
        svc = service(session)
        with pytest.raises(VmidTakenError) as caught:
            await svc.reserve(node, 4242)
        assert caught.value.code == "vmid_taken"
        # The conflict did not poison the transaction: the same session can release and reserve again.
        await svc.release(node.id, 4242)
        await svc.reserve(node, 4242)
        await session.commit()


@pytest.mark.parametrize("vmid", [99, 0, -1, 1_000_000_000])
async def test_reserving_out_of_range_vmid_is_a_validation_error(
    sessions: async_sessionmaker[AsyncSession], node: Node, vmid: int
) -> None:
    async with sessions() as session:
        with pytest.raises(ValidationFailed) as caught:
            await service(session).reserve(node, vmid)
    assert caught.value.errors[0].field == "vmid"


async def test_a_reservation_reads_taken_once_its_guest_exists(
    sessions: async_sessionmaker[AsyncSession], node: Node
) -> None:
    async with sessions() as session:
        container = Container(user_id=node.user_id, node_id=node.id, vmid=4300, hostname="ct", request={})
        session.add(container)
        await session.flush()
        await service(session).reserve(node, 4300, container.id)
        await session.commit()
    nothing_on_proxmox: set[int] = set()  # a node answer (or cache) from before the guest was created
    async with sessions() as session:
        before = await service(session).check(node, 4300, taken=nothing_on_proxmox)
        assert (before.available, before.reason) == (False, "reserved")
        stored = await session.get_one(Container, container.id)
        stored.pve_created_by_operation = uuid.uuid4()  # the create task of an operation succeeded
        await session.commit()
    async with sessions() as session:
        after = await service(session).check(node, 4300, taken=nothing_on_proxmox)
        assert (after.available, after.reason) == (False, "taken")
