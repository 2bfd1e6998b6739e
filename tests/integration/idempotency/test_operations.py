"""`Idempotency-Key` on the POSTs that queue a container operation: start, stop, shutdown, restart, retry and the
services refresh. A retry with the key answers the first operation again (not a 409 `container_busy`) and sends no
second job; another body or another container with the key is a 422."""

import asyncio
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.events.logbuffer import LogBuffer
from infrahaus_domain.models.containers import Operation
from infrahaus_domain.operations.schemas import OperationError
from infrahaus_pvesim import RunningNode
from tests.fixtures.api import UserClient, assert_problem, sent_jobs
from tests.integration.containers.conftest import create_container
from tests.integration.containers.test_lifecycle import finish, ready_container


async def operations(db: async_sessionmaker[AsyncSession], kind: str) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(Operation).where(Operation.kind == kind)) or 0)


@pytest.mark.parametrize(
    ("action", "kind", "status"),
    [
        ("start", "start", "stopped"),
        ("stop", "stop", "running"),
        ("restart", "restart", "running"),
        ("shutdown", "shutdown", "running"),
        ("services/refresh", "services_refresh", "running"),
    ],
)
async def test_a_retried_action_answers_the_first_operation(
    action: str,
    kind: str,
    status: str,
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    stub_broker: StubBroker,
) -> None:
    container = await ready_container(user_client, db, logbuffer, sim_node, vmid=700, status=status)
    url = f"/api/containers/{container['id']}/{action}"
    headers = {"Idempotency-Key": f"{kind}-1"}
    jobs_before = len(sent_jobs(stub_broker))

    first = await user_client.http.post(url, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["kind"] == kind
    again = await user_client.http.post(url, headers=headers)
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == f"/api/operations/{first.json()['id']}"
    assert await operations(db, kind) == 1
    assert len(sent_jobs(stub_broker)) == jobs_before + 1

    # Without the key the rules answer as before: one operation at a time.
    assert_problem(await user_client.http.post(url), 409, "container_busy")
    # The same key on another container's endpoint names another request.
    other = await user_client.http.post(f"/api/containers/{registered_node['id']}/{action}", headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    assert await operations(db, kind) == 1


async def test_shutdown_body_is_part_of_the_request(
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    container = await ready_container(user_client, db, logbuffer, sim_node, vmid=710)
    url = f"/api/containers/{container['id']}/shutdown"
    headers = {"Idempotency-Key": "shutdown-body"}
    # No body means the default timeout: the same request as asking for 60 s explicitly.
    first = await user_client.http.post(url, headers=headers)
    assert first.status_code == 202, first.text
    explicit = await user_client.http.post(url, json={"timeout": 60}, headers=headers)
    assert explicit.status_code == 202
    assert explicit.json() == first.json()
    assert_problem(
        await user_client.http.post(url, json={"timeout": 5}, headers=headers), 422, "idempotency_key_reused"
    )
    assert await operations(db, "shutdown") == 1


async def test_concurrent_starts_with_one_key_queue_one_operation(
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    stub_broker: StubBroker,
) -> None:
    container = await ready_container(user_client, db, logbuffer, sim_node, vmid=720, status="stopped")
    url = f"/api/containers/{container['id']}/start"
    jobs_before = len(sent_jobs(stub_broker))
    responses = await asyncio.gather(
        *(user_client.http.post(url, headers={"Idempotency-Key": "start-race"}) for _ in range(4))
    )
    assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
    assert all(r.json() == responses[0].json() for r in responses)
    assert await operations(db, "start") == 1
    assert len(sent_jobs(stub_broker)) == jobs_before + 1


async def test_a_retried_retry_answers_the_first_new_creation(
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    stub_broker: StubBroker,
) -> None:
    created = await create_container(user_client, vmid=730)
    await finish(db, logbuffer, created["operation"]["id"], error=OperationError(code="script_failed", detail="x"))
    url = f"/api/containers/{created['container']['id']}/retry"
    headers = {"Idempotency-Key": "retry-1"}
    first = await user_client.http.post(url, headers=headers)
    assert first.status_code == 202, first.text
    again = await user_client.http.post(url, headers=headers)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert await operations(db, "create") == 2
    assert [j.actor_name for j in sent_jobs(stub_broker)] == ["container.create", "container.create"]
    # Without the key a second retry is refused: the creation is running again.
    assert_problem(await user_client.http.post(url), 409, "invalid_state")
