"""The services the worker drives, on PostgreSQL and on SQLite (the embedded mode): operation transitions, the
reconciler's queries, the one-active-operation index, services and credentials, removal."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import msgspec
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain import migrations
from infrahaus_domain.containers.errors import ContainerBusyError, IdempotencyKeyReusedError, OperationCancelledError
from infrahaus_domain.containers.schemas import ContainerCreate, ServiceInfo
from infrahaus_domain.containers.service import ContainerService
from infrahaus_domain.crypto import SecretBox, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.events.logbuffer import LogBuffer, MemoryLogStore
from infrahaus_domain.events.service import EventService
from infrahaus_domain.idempotency import IdempotencyKeys, StoredResponse
from infrahaus_domain.models.containers import Container, Event, Operation, ServiceCredential
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.models.users import User
from infrahaus_domain.operations.schemas import OperationError
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.ports.memory import memory_ports
from infrahaus_domain.services import Services
from infrahaus_domain.settings import DatabaseSettings, OutboundSettings, Settings
from infrahaus_domain.vmids.errors import VmidTakenError
from infrahaus_pvesim import RunningNode, SimulatorConfig
from infrahaus_pvesim.config import DEMO_TOKEN_ID
from tests.fixtures.api import LOOPBACK
from tests.integration.containers.conftest import put_guest

BOX = SecretBox([generate_key("k1")])
SETTINGS = Settings(database=DatabaseSettings(url="sqlite+aiosqlite://"), outbound=OutboundSettings(allow=LOOPBACK))


@pytest.fixture(params=["postgresql", "sqlite"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, db_url: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = db_url if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"
    engine = create_engine(url)
    if request.param == "sqlite":
        await migrations.upgrade(engine)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


class World:
    """A user, a node and a container in `creating` with its queued create operation."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.ports = memory_ports()
        self.logbuffer = LogBuffer(MemoryLogStore(), self.ports.events)

    def factory(self, session: AsyncSession) -> Services:
        return Services(session, settings=SETTINGS, box=BOX, ports=self.ports, logbuffer=self.logbuffer)

    def services(self, session: AsyncSession) -> tuple[ContainerService, OperationService, EventService]:
        services = self.factory(session)
        return services.containers, services.operations, services.events

    async def setup(self) -> None:
        async with self.sessions() as session:
            user = User(auth_server="pve", userid="alice@pam", display_name="alice")
            session.add(user)
            await session.flush()
            node = Node(
                user_id=user.id, name="pve", host="127.0.0.1", pve_node="pve", token_id="a@pam!t", token_secret="x"
            )
            session.add(node)
            await session.flush()
            container = Container(user_id=user.id, node_id=node.id, vmid=900, hostname="ct", request={})
            session.add(container)
            await session.flush()
            session.add(VmidReservation(node_id=node.id, vmid=900, container_id=container.id))
            _, ops, _ = self.services(session)
            op = await ops.queue(container_id=container.id, user_id=user.id, kind="create")
            await session.commit()
            self.user_id, self.container_id, self.operation_id = user.id, container.id, op.id


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession]) -> World:
    built = World(sessions)
    await built.setup()
    return built


async def test_operation_lifecycle_and_the_one_active_rule(world: World) -> None:
    async with world.sessions() as session:
        _, ops, _ = world.services(session)
        with pytest.raises(ContainerBusyError):
            await ops.queue(container_id=world.container_id, user_id=world.user_id, kind="start")
        claimed = await ops.claim(world.operation_id, "w1")
        assert claimed is not None
        assert claimed.status == "running"
        assert claimed.attempts == 1
        # A redelivered message takes the running operation over.
        again = await ops.claim(world.operation_id, "w2")
        assert again is not None
        assert again.attempts == 2
        assert again.worker_id == "w2"
        await ops.progress(world.operation_id, step="create", progress=10, message="Creating")
        await ops.succeed(world.operation_id, {"vmid": 900})
        assert await ops.claim(world.operation_id, "w3") is None
        await session.commit()
    async with world.sessions() as session:
        container = await session.get(Container, world.container_id)
        assert container is not None
        assert container.lifecycle == "ready"
        types = list(
            (
                await session.scalars(
                    select(Event.type).where(Event.container_id == world.container_id).order_by(Event.seq)
                )
            ).all()
        )
        assert types == ["queued", "step", "created"]
        _, ops, _ = world.services(session)
        start = await ops.queue(container_id=world.container_id, user_id=world.user_id, kind="start")
        await session.commit()
        assert start.status == "queued"


async def test_progress_after_a_cancel_stops_the_worker(world: World) -> None:
    async with world.sessions() as session:
        _, ops, _ = world.services(session)
        await ops.claim(world.operation_id, "w1")
        await ops.cancel(world.operation_id, reason="deleted")
        await session.commit()
    async with world.sessions() as session:
        _, ops, _ = world.services(session)
        with pytest.raises(OperationCancelledError):
            await ops.progress(world.operation_id, step="start", progress=20, message="Starting")
        # Finishing a cancelled operation changes nothing.
        await ops.succeed(world.operation_id, {})
        op = await session.get(Operation, world.operation_id)
        assert op is not None
        assert op.status == "cancelled"


async def test_reconciler_queries(world: World) -> None:
    async with world.sessions() as session:
        _, ops, _ = world.services(session)
        assert await ops.requeue_lost(queued_longer_than=timedelta(minutes=5)) == []
        await session.execute(
            update(Operation)
            .where(Operation.id == world.operation_id)
            .values(updated_at=datetime.now(UTC) - timedelta(minutes=10))
        )
        lost = await ops.requeue_lost(queued_longer_than=timedelta(minutes=5))
        assert [o.id for o in lost] == [world.operation_id]
        # Re-sent just now: not again until the threshold passed once more.
        assert await ops.requeue_lost(queued_longer_than=timedelta(minutes=5)) == []

        stale = timedelta(seconds=30)

        async def worker_dies() -> None:
            await session.execute(
                update(Operation)
                .where(Operation.id == world.operation_id)
                .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=1))
            )

        first = await ops.claim(world.operation_id, "w1")
        assert first is not None
        assert first.attempts == 1
        assert await ops.resume_stale(heartbeat_older_than=stale, max_attempts=2) == ([], [])
        await worker_dies()
        # The first worker is lost: its operation is handed over (heartbeat cleared), not failed.
        resumed, failed = await ops.resume_stale(heartbeat_older_than=stale, max_attempts=2)
        assert ([o.id for o in resumed], failed) == ([world.operation_id], [])
        op = await session.get(Operation, world.operation_id)
        assert op is not None
        assert (op.status, op.heartbeat_at, op.worker_id) == ("running", None, None)
        # Handed over just now: not again until the threshold passed once more.
        assert await ops.resume_stale(heartbeat_older_than=stale, max_attempts=2) == ([], [])
        second = await ops.claim(world.operation_id, "w2")
        assert second is not None
        assert second.attempts == 2
        # The first worker, were it only slow, is fenced off: no heartbeat, no terminal write.
        assert not await ops.heartbeat(world.operation_id, attempt=1)
        assert await ops.heartbeat(world.operation_id, attempt=2)
        await ops.succeed(world.operation_id, {"by": "w1"}, attempt=1)
        assert (await session.get_one(Operation, world.operation_id)).status == "running"
        # The second worker dies too: the attempts are spent.
        await worker_dies()
        resumed, failed = await ops.resume_stale(heartbeat_older_than=stale, max_attempts=2)
        assert (resumed, [o.id for o in failed]) == ([], [world.operation_id])
        await session.commit()
    async with world.sessions() as session:
        op = await session.get(Operation, world.operation_id)
        container = await session.get(Container, world.container_id)
        assert op is not None
        assert container is not None
        assert op.status == "failed"
        assert op.error is not None
        assert op.error["code"] == "worker_lost"
        assert container.lifecycle == "error"
        assert container.last_error is not None
        assert container.last_error["code"] == "worker_lost"


async def test_failure_keeps_exit_code_and_log_tail(world: World) -> None:
    async with world.sessions() as session:
        _, ops, _ = world.services(session)
        await ops.claim(world.operation_id, "w1")
        error = OperationError(
            code="script_failed", detail="10-web exited with 3", exit_code=3, task_log_tail=["a", "b"], remedy="fix it"
        )
        await ops.fail(world.operation_id, error)
        await session.commit()
    async with world.sessions() as session:
        op = await session.get(Operation, world.operation_id)
        assert op is not None
        assert op.error == {
            "code": "script_failed",
            "detail": "10-web exited with 3",
            "remedy": "fix it",
            "task_log_tail": ["a", "b"],
            "exit_code": 3,
        }


async def test_runtime_services_credentials_and_removal(world: World) -> None:
    async with world.sessions() as session:
        containers, ops, _ = world.services(session)
        await containers.set_runtime(
            world.container_id, ip_address="10.0.0.5", pve_created_by_operation=world.operation_id
        )
        await containers.replace_services(
            world.container_id,
            [ServiceInfo(name="nginx.service", port=80, protocol="tcp", status="running")],
            {"nginx": {"ADMIN_PASSWORD": "s3cret-value"}},
            operation_id=world.operation_id,
        )
        await session.commit()
    async with world.sessions() as session:
        container = await session.get(Container, world.container_id)
        assert container is not None
        assert container.ip_address == "10.0.0.5"
        assert container.pve_created_by_operation == world.operation_id
        credential = await session.scalar(select(ServiceCredential))
        assert credential is not None
        assert credential.value != "s3cret-value"
        assert BOX.decrypt(credential.value) == "s3cret-value"
        events = list((await session.scalars(select(Event).where(Event.type == "service_discovered"))).all())
        assert [e.meta["name"] for e in events] == ["nginx.service"]
        assert "s3cret-value" not in str([e.meta for e in events])

        containers, ops, _ = world.services(session)
        await ops.claim(world.operation_id, "w1")
        await ops.succeed(world.operation_id, {})
        await containers.remove(world.container_id)
        await session.commit()
    async with world.sessions() as session:
        assert await session.get(Container, world.container_id) is None
        assert await session.scalar(select(VmidReservation)) is None
        # The operation still names its container, and the audit trail outlives the row (the streams need it).
        op = await session.get(Operation, world.operation_id)
        assert op is not None
        assert op.container_id == world.container_id
        assert op.status == "succeeded"
        assert op.message == "Container created and provisioned."
        kept = (await session.scalars(select(Event.type).where(Event.container_id == world.container_id))).all()
        assert "service_discovered" in kept


async def test_event_ids_are_monotonic_across_events_and_lines_and_survive_a_lost_counter(world: World) -> None:
    async with world.sessions() as session:
        _, _, events = world.services(session)
        first = await events.record(world.container_id, "step", "one", {"step": "create"})
        line = await world.logbuffer.append(world.container_id, None, step="create", line="out")
        second = await events.record(world.container_id, "step", "two", {})
        await session.commit()
    assert first.seq < line.id < second.seq
    # Losing the counter (Redis flushed, process restarted) never moves ids below the stored events.
    await world.logbuffer.clear(world.container_id)
    async with world.sessions() as session:
        _, _, events = world.services(session)
        third = await events.record(world.container_id, "step", "three", {})
        await session.commit()
    assert third.seq == second.seq + 1
    assert isinstance(world.container_id, UUID)


async def test_event_pages_walk_newest_first_with_counts(world: World) -> None:
    async with world.sessions() as session:
        _, _, events = world.services(session)
        for i in range(5):
            await events.record(world.container_id, "step" if i % 2 else "failed", f"e{i}", {"i": i})
        await session.commit()
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await events.page(world.container_id, limit=2, cursor=cursor)
            assert page.counts == {"failed": 3, "step": 2, "queued": 1}
            seen.extend(e.message for e in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ["e4", "e3", "e2", "e1", "e0", "Creation requested."]
        only_steps = await events.page(world.container_id, type="step")
        assert [e.metadata["i"] for e in only_steps.items] == [3, 1]


async def test_create_with_reservation_and_idempotency_on_both_databases(
    world: World, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> None:

    put_guest(sim_node, 905)
    async with world.sessions() as session:
        node = await session.scalar(select(Node))
        assert node is not None
        node.port = sim_node.api_port
        node.token_id = DEMO_TOKEN_ID
        node.token_secret = BOX.encrypt(simulator_config.tokens[DEMO_TOKEN_ID].secret)
        node.tls_fingerprint = sim_node.fingerprint
        creation = world.factory(session).creation
        keys = IdempotencyKeys(session)
        data = ContainerCreate(hostname="embedded", vmid=901, os_template="debian-12-standard")
        claim = await keys.claim(world.user_id, "POST /api/containers", "k", data)
        assert claim.replay is None
        first, _op = await creation.accept(world.user_id, data)
        stored = StoredResponse(status=202, body=msgspec.to_builtins(first), location=None)
        await keys.record(claim, stored)
        replay = await keys.claim(world.user_id, "POST /api/containers", "k", data)
        assert replay.replay == stored
        with pytest.raises(IdempotencyKeyReusedError):
            await keys.claim(
                world.user_id, "POST /api/containers", "k", ContainerCreate(hostname="other", vmid=902, os_template="x")
            )
        for taken in (901, 905, 900):
            with pytest.raises(VmidTakenError):
                await creation.accept(world.user_id, ContainerCreate(hostname="dup", vmid=taken, os_template="x"))
        await session.commit()
    async with world.sessions() as session:
        vmids_reserved = sorted((await session.scalars(select(VmidReservation.vmid))).all())
        assert vmids_reserved == [900, 901]
