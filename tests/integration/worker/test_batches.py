"""Bulk actions: the batch the API queues, the worker's release of held operations, cancel, the reconciler's
release pass; real PostgreSQL and Redis, the simulator, actor functions awaited with a test context."""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from infrahaus_domain.models.containers import Event
from infrahaus_pvesim import RunningNode, SimNodeConfig, SimulatorConfig
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import restart_container, start_container, stop_container
from infrahaus_worker.batches import release_after
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.reconciler import reconcile
from tests.fixtures.api import UserClient, sent_jobs
from tests.integration.worker.helpers import operation, request_action, request_container

DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    # Tasks long enough for an operation to be seen running while the test acts.
    return SimulatorConfig(
        auth_failure_delay=0.0, data_dir=tmp_path / "pvesim", nodes=[SimNodeConfig(name="pve")], task_duration=0.3
    )


async def ready_containers(ctx: WorkerContext, user: UserClient, vmids: list[int], **body: Any) -> list[str]:
    ids: list[str] = []
    for vmid in vmids:
        container_id, op_id, _ = await request_container(
            user, hostname=f"bulk-{vmid}", vmid=vmid, os_template=DEBIAN, **body
        )
        await create_container(ctx, op_id)
        assert (await operation(ctx, op_id)).status == "succeeded", (await operation(ctx, op_id)).error
        ids.append(container_id)
    return ids


def sent_for(broker: StubBroker) -> set[str]:
    return {m.kwargs["operation_id"] for m in sent_jobs(broker)}


def drain(broker: StubBroker) -> None:
    for queue in broker.queues.values():
        while not queue.empty():
            queue.get_nowait()


async def test_bulk_stop_holds_what_max_parallel_does_not_allow_and_releases_it_as_operations_end(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    stub_broker: StubBroker,
) -> None:
    a, b, c, busy = await ready_containers(worker_ctx, user_client, [301, 302, 303, 304])
    single = await request_action(user_client, busy, "stop")
    drain(stub_broker)
    stranger = str(uuid.uuid4())

    body = {"action": "stop", "container_ids": [a, b, c, busy, stranger], "max_parallel": 2}
    response = await user_client.http.post("/api/containers/bulk", json=body, headers={"Idempotency-Key": "bulk-1"})
    assert response.status_code == 202, response.text
    batch = response.json()
    assert response.headers["Location"] == f"/api/batches/{batch['id']}"
    assert (batch["action"], batch["total"], batch["max_parallel"], batch["status"]) == ("stop", 5, 2, "active")
    assert batch["counts"] == {"queued": 3, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "skipped": 2}
    items = {item["container_id"]: item for item in batch["operations"]}
    assert [item["container_id"] for item in batch["operations"]] == [a, b, c, busy, stranger]
    assert (items[busy]["status"], items[busy]["skipped"], items[busy]["operation"]) == (
        "skipped",
        "container_busy",
        None,
    )
    assert (items[stranger]["skipped"], items[stranger]["hostname"]) == ("not_found", None)
    assert [items[x]["waiting"] for x in (a, b, c)] == [False, False, True]
    assert items[a]["hostname"] == "bulk-301"
    op_a, op_b, op_c = (items[x]["operation"]["id"] for x in (a, b, c))
    assert items[a]["operation"]["batch_id"] == batch["id"]
    # Only what max_parallel allows was sent; the busy container kept its own single operation.
    assert sent_for(stub_broker) == {op_a, op_b}
    assert (await operation(worker_ctx, single)).batch_id is None

    # The same key and body answers the same batch; the key with another body is refused.
    replay = await user_client.http.post("/api/containers/bulk", json=body, headers={"Idempotency-Key": "bulk-1"})
    assert replay.status_code == 202
    assert replay.json()["id"] == batch["id"]
    assert sent_for(stub_broker) == {op_a, op_b}
    other = await user_client.http.post(
        "/api/containers/bulk", json={**body, "max_parallel": 3}, headers={"Idempotency-Key": "bulk-1"}
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"

    # A held operation is never run, even if a message for it arrives.
    await stop_container(worker_ctx, op_c)
    assert (await operation(worker_ctx, op_c)).status == "queued"

    drain(stub_broker)
    await stop_container(worker_ctx, op_a)
    assert (await operation(worker_ctx, op_a)).status == "succeeded"
    assert await release_after(worker_ctx, op_a) == [op_c]
    assert sent_for(stub_broker) == {op_c}
    # Nothing more to release while b and c take both slots.
    assert await release_after(worker_ctx, op_a) == []
    await stop_container(worker_ctx, op_b)
    await stop_container(worker_ctx, op_c)
    assert await release_after(worker_ctx, op_c) == []

    done = (await user_client.http.get(f"/api/batches/{batch['id']}")).json()
    assert done["status"] == "finished"
    assert done["counts"] == {"queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0, "skipped": 2}
    assert all(sim_node.state.guests[v].status == "stopped" for v in (301, 302, 303))
    # Each container's audit trail tells its own story, as for a single stop.
    async with worker_ctx.session() as session:
        types = (await session.scalars(select(Event.type).where(Event.container_id == a).order_by(Event.seq))).all()
    assert types[-1] == "stopped"
    assert "queued" in types

    listed = (await user_client.http.get("/api/batches")).json()
    assert [item["id"] for item in listed["items"]] == [batch["id"]]
    assert listed["items"][0]["counts"]["succeeded"] == 3
    assert "operations" not in listed["items"][0]


async def test_cancel_stops_what_has_not_started_and_lets_the_running_one_finish(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    other_user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    stub_broker: StubBroker,
) -> None:
    a, b, c = await ready_containers(worker_ctx, user_client, [311, 312, 313])
    response = await user_client.http.post(
        "/api/containers/bulk", json={"action": "stop", "container_ids": [a, b, c], "max_parallel": 1}
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    op_a, op_b, op_c = (item["operation"]["id"] for item in batch["operations"])

    running = asyncio.create_task(stop_container(worker_ctx, op_a))
    while (await operation(worker_ctx, op_a)).status != "running":
        assert not running.done()
        await asyncio.sleep(0.02)
    assert (await other_user_client.http.post(f"/api/batches/{batch['id']}/cancel")).status_code == 404
    cancelled = await user_client.http.post(f"/api/batches/{batch['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    after = cancelled.json()
    assert after["status"] == "active"
    assert after["cancelled_at"] is not None
    assert after["counts"] == {"queued": 0, "running": 1, "succeeded": 0, "failed": 0, "cancelled": 2, "skipped": 0}
    assert [item["waiting"] for item in after["operations"]] == [False, False, False]

    await running
    assert (await operation(worker_ctx, op_a)).status == "succeeded"
    assert await release_after(worker_ctx, op_a) == []
    final = (await user_client.http.get(f"/api/batches/{batch['id']}")).json()
    assert final["status"] == "cancelled"
    assert final["counts"] == {"queued": 0, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 2, "skipped": 0}
    assert [sim_node.state.guests[v].status for v in (311, 312, 313)] == ["stopped", "running", "running"]
    for container_id, op_id in ((b, op_b), (c, op_c)):
        assert (await operation(worker_ctx, op_id)).message == "Cancelled with its batch."
        async with worker_ctx.session() as session:
            last = await session.scalar(
                select(Event.type).where(Event.container_id == container_id).order_by(Event.seq.desc()).limit(1)
            )
        assert last == "cancelled"
    # The containers are free again for single actions.
    await request_action(user_client, b, "stop")


async def test_the_reconciler_releases_what_a_lost_worker_did_not(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    stub_broker: StubBroker,
) -> None:
    a, b = await ready_containers(worker_ctx, user_client, [321, 322])
    response = await user_client.http.post(
        "/api/containers/bulk", json={"action": "restart", "container_ids": [a, b], "max_parallel": 1}
    )
    assert response.status_code == 202, response.text
    op_a, op_b = (item["operation"]["id"] for item in response.json()["operations"])
    # The worker ran the operation but died before releasing the next one.
    await restart_container(worker_ctx, op_a)
    assert (await operation(worker_ctx, op_a)).status == "succeeded"
    drain(stub_broker)
    report = await reconcile(worker_ctx)
    assert report.released == [op_b]
    assert sent_for(stub_broker) == {op_b}
    # Its old `updated_at` does not make the requeue pass send it a second time.
    assert report.requeued == []
    await restart_container(worker_ctx, op_b)
    assert (await operation(worker_ctx, op_b)).status == "succeeded"
    assert (await reconcile(worker_ctx)).released == []


async def test_a_selector_picks_the_callers_matching_containers(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    other_user_client: UserClient,
    registered_node: dict[str, Any],
    sim_node: RunningNode,
    stub_broker: StubBroker,
) -> None:
    web1, web2 = await ready_containers(worker_ctx, user_client, [331, 332], tags=["web"])
    [db] = await ready_containers(worker_ctx, user_client, [333], tags=["db"])
    stop = await request_action(user_client, web2, "stop")
    await stop_container(worker_ctx, stop)

    response = await user_client.http.post(
        "/api/containers/bulk", json={"action": "start", "selector": {"tags": ["web"], "status": "stopped"}}
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert [item["container_id"] for item in batch["operations"]] == [web2]
    assert batch["max_parallel"] is None
    await start_container(worker_ctx, batch["operations"][0]["operation"]["id"])
    assert sim_node.state.guests[332].status == "running"

    # A selector with a state mismatch skips with the single action's code.
    response = await user_client.http.post(
        "/api/containers/bulk", json={"action": "start", "selector": {"node_id": registered_node["id"]}}
    )
    assert response.status_code == 202, response.text
    skipped = {item["container_id"]: item["skipped"] for item in response.json()["operations"]}
    assert skipped == {web1: "invalid_state", web2: "invalid_state", db: "invalid_state"}

    # Another user's selector never reaches these containers.
    response = await other_user_client.http.post(
        "/api/containers/bulk", json={"action": "delete", "selector": {"lifecycle": "ready"}}
    )
    assert response.status_code == 202, response.text
    assert (response.json()["total"], response.json()["operations"]) == (0, [])
    assert (await other_user_client.http.get(f"/api/batches/{batch['id']}")).status_code == 404


async def test_every_invalid_field_at_once(user_client: UserClient) -> None:
    response = await user_client.http.post(
        "/api/containers/bulk", json={"action": "explode", "max_parallel": 0, "container_ids": ["nope"]}
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"action", "max_parallel", "container_ids[0]"}

    same = str(uuid.uuid4())
    response = await user_client.http.post(
        "/api/containers/bulk", json={"action": "stop", "container_ids": [same, same], "selector": {}}
    )
    assert response.status_code == 422
    errors = [(e["field"], e["message"]) for e in response.json()["errors"]]
    assert errors == [
        ("selector", "Give container_ids or a selector, not both."),
        ("container_ids[1]", "Listed twice."),
        ("selector", "Give at least one criterion."),
    ]
    response = await user_client.http.post("/api/containers/bulk", json={"action": "stop"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["container_ids"]
    assert (await user_client.http.get(f"/api/batches/{uuid.uuid4()}")).status_code == 404
    assert (await user_client.http.get("/api/batches", params={"cursor": "x"})).status_code in (400, 422)
