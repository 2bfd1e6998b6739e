"""Lifecycle requests, delete, retry: state rules, one operation at a time, ownership; operations listing."""

from typing import Any
from uuid import UUID

from dramatiq.brokers.stub import StubBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.events.logbuffer import LogBuffer
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import Container, Operation
from infrahaus_domain.operations.schemas import OperationError
from infrahaus_domain.operations.service import OperationService
from infrahaus_pvesim import RunningNode
from tests.fixtures.api import UserClient, assert_not_found_for_other_user, assert_problem, sent_jobs
from tests.integration.containers.conftest import create_container, put_guest


async def finish(
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    operation_id: str,
    *,
    error: OperationError | None = None,
) -> None:
    """Play the worker: claim the operation and finish it."""
    async with db() as session:
        ops = OperationService(session, events=EventService(session, logbuffer=logbuffer))
        await ops.claim(UUID(operation_id), "test-worker")
        if error is None:
            await ops.succeed(UUID(operation_id), {"ok": True})
        else:
            await ops.fail(UUID(operation_id), error)
        await session.commit()


async def ready_container(
    client: UserClient,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    sim_node: RunningNode,
    *,
    vmid: int,
    status: str = "running",
) -> dict[str, Any]:
    created = await create_container(client, vmid=vmid, hostname=f"ct{vmid}")
    await finish(db, logbuffer, created["operation"]["id"])
    put_guest(sim_node, vmid, status)
    container: dict[str, Any] = created["container"]
    return container


async def test_state_rules_and_one_operation_at_a_time(
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    stub_broker: StubBroker,
) -> None:
    container = await ready_container(user_client, db, logbuffer, sim_node, vmid=500)
    base = f"/api/containers/{container['id']}"
    assert_problem(await user_client.http.post(f"{base}/start"), 409, "invalid_state")

    shutdown = await user_client.http.post(f"{base}/shutdown", json={"timeout": 5})
    assert shutdown.status_code == 202, shutdown.text
    op = shutdown.json()
    assert op["kind"] == "shutdown"
    assert op["status"] == "queued"
    assert shutdown.headers["location"] == f"/api/operations/{op['id']}"
    assert sent_jobs(stub_broker)[-1].actor_name == "container.shutdown"
    async with db() as session:
        stored = await session.get(Operation, op["id"])
        assert stored is not None
        assert stored.params == {"timeout": 5}

    for action in ("stop", "restart", "shutdown"):
        assert_problem(await user_client.http.post(f"{base}/{action}"), 409, "container_busy")
    assert_problem(await user_client.http.delete(base), 409, "container_busy")

    await finish(db, logbuffer, op["id"])
    sim_node.state.guests[500].status = "stopped"
    assert_problem(await user_client.http.post(f"{base}/stop"), 409, "invalid_state")
    started = await user_client.http.post(f"{base}/start")
    assert started.status_code == 202, started.text
    assert sent_jobs(stub_broker)[-1].actor_name == "container.start"


async def test_shutdown_without_body_uses_the_default_timeout(
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    container = await ready_container(user_client, db, logbuffer, sim_node, vmid=510)
    response = await user_client.http.post(f"/api/containers/{container['id']}/shutdown")
    assert response.status_code == 202, response.text
    async with db() as session:
        stored = await session.get(Operation, response.json()["id"])
        assert stored is not None
        assert stored.params == {"timeout": 60}


async def test_actions_need_a_ready_container(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    created = await create_container(user_client, vmid=520)
    put_guest(sim_node, 520)
    response = await user_client.http.post(f"/api/containers/{created['container']['id']}/stop")
    assert_problem(response, 409, "invalid_state")


async def test_delete_while_creating_cancels_the_creation(
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    stub_broker: StubBroker,
) -> None:
    created = await create_container(user_client, vmid=530)
    response = await user_client.http.delete(f"/api/containers/{created['container']['id']}")
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "delete"
    async with db() as session:
        create_op = await session.get(Operation, created["operation"]["id"])
        container = await session.get(Container, created["container"]["id"])
        assert create_op is not None
        assert container is not None
        assert create_op.status == "cancelled"
        assert container.lifecycle == "deleting"
        # The worker's next step boundary sees the cancellation.
        ops = OperationService(session, events=EventService(session, logbuffer=None))  # type: ignore[arg-type]
        assert await ops.is_cancelled(create_op.id)
    assert [j.actor_name for j in sent_jobs(stub_broker)] == ["container.create", "container.delete"]
    assert_problem(
        await user_client.http.delete(f"/api/containers/{created['container']['id']}"), 409, "container_busy"
    )


async def test_retry_only_after_a_failed_creation(
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    stub_broker: StubBroker,
) -> None:
    created = await create_container(user_client, vmid=540)
    base = f"/api/containers/{created['container']['id']}"
    assert_problem(await user_client.http.post(f"{base}/retry"), 409, "invalid_state")
    await finish(
        db,
        logbuffer,
        created["operation"]["id"],
        error=OperationError(code="script_failed", detail="Script 10-first exited with 3.", exit_code=3),
    )
    failed = await user_client.http.get(f"/api/operations/{created['operation']['id']}")
    assert failed.json()["status"] == "failed"
    assert failed.json()["error"] == {
        "code": "script_failed",
        "detail": "Script 10-first exited with 3.",
        "exit_code": 3,
    }

    retried = await user_client.http.post(f"{base}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["kind"] == "create"
    assert retried.json()["id"] != created["operation"]["id"]
    assert [j.actor_name for j in sent_jobs(stub_broker)] == ["container.create", "container.create"]
    async with db() as session:
        container = await session.get(Container, created["container"]["id"])
        assert container is not None
        assert container.lifecycle == "creating"
        assert container.last_error is None
    assert_problem(await user_client.http.post(f"{base}/retry"), 409, "invalid_state")

    events = (await user_client.http.get(f"{base}/events")).json()
    assert [e["type"] for e in events["items"]] == ["retried", "queued", "failed", "queued"]
    assert events["counts"] == {"failed": 1, "queued": 2, "retried": 1}
    failure = events["items"][2]
    assert failure["operation"]["status"] == "failed"
    assert failure["container"] == {"lifecycle": "error", "status": None}
    only_errors = (await user_client.http.get(f"{base}/events", params={"type": "failed"})).json()
    assert [e["metadata"]["code"] for e in only_errors["items"]] == ["script_failed"]
    bogus = assert_problem(
        await user_client.http.get(f"{base}/events", params={"type": "bogus"}), 422, "validation_failed"
    )
    [error] = bogus["errors"]
    assert error["field"] == "type"
    assert error["code"] == "not_allowed"
    assert error["message"].startswith("Must be one of: queued, step, created, started")
    assert "retried" in error["message"]


async def test_operations_listing_filters_and_pages(
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    first = await ready_container(user_client, db, logbuffer, sim_node, vmid=550)
    await create_container(user_client, vmid=551, hostname="second")
    stop = await user_client.http.post(f"/api/containers/{first['id']}/stop")
    assert stop.status_code == 202

    everything = (await user_client.http.get("/api/operations")).json()
    assert [o["kind"] for o in everything["items"]] == ["stop", "create", "create"]
    assert everything["next_cursor"] is None
    queued = (await user_client.http.get("/api/operations", params={"status": "queued"})).json()
    assert sorted(o["kind"] for o in queued["items"]) == ["create", "stop"]
    creates = (await user_client.http.get("/api/operations", params={"kind": "create", "status": "succeeded"})).json()
    assert [o["container_id"] for o in creates["items"]] == [first["id"]]

    page1 = (await user_client.http.get("/api/operations", params={"limit": 2})).json()
    page2 = (await user_client.http.get("/api/operations", params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    assert [o["id"] for o in page1["items"] + page2["items"]] == [o["id"] for o in everything["items"]]
    assert page2["next_cursor"] is None

    per_container = (await user_client.http.get(f"/api/containers/{first['id']}/operations")).json()
    assert [o["kind"] for o in per_container["items"]] == ["stop", "create"]
    assert_problem(await user_client.http.get("/api/operations", params={"status": "bogus"}), 422)
    assert_problem(await user_client.http.get("/api/operations", params={"cursor": "garbage"}), 422)


async def test_another_users_container_and_operation_are_404_everywhere(
    user_client: UserClient,
    other_user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    container = await ready_container(user_client, db, logbuffer, sim_node, vmid=560)
    ops = (await user_client.http.get(f"/api/containers/{container['id']}/operations")).json()["items"]
    base = f"/api/containers/{container['id']}"
    other = other_user_client.http
    for method, path, body in [
        ("POST", f"{base}/start", None),
        ("POST", f"{base}/stop", None),
        ("POST", f"{base}/shutdown", {"timeout": 3}),
        ("POST", f"{base}/restart", None),
        ("POST", f"{base}/retry", None),
        ("DELETE", base, None),
        ("GET", f"{base}/operations", None),
        ("GET", f"{base}/events", None),
        ("GET", f"{base}/logs", None),
        ("GET", f"{base}/progress", None),
        ("GET", f"/api/operations/{ops[0]['id']}", None),
    ]:
        await assert_not_found_for_other_user(other, method, path, json=body)
    assert (await other.get("/api/operations")).json()["items"] == []
    # Nothing was changed by the attempts.
    assert len((await user_client.http.get(f"{base}/operations")).json()["items"]) == 1
