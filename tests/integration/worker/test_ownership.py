"""Ownership: the worker changes or destroys only guests that carry this container's marker.

Guests of others are made through the simulator's own API (`sim_http`, the demo token infrahaus uses too), never
through infrahaus; after each refusal the guest must be exactly as it was.
"""

import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select, update

from infrahaus_domain.containers.marker import description_line, marker_tags, short_tag
from infrahaus_domain.models.containers import Container, Event, Operation
from infrahaus_domain.models.nodes import VmidReservation
from infrahaus_pvesim import RunningNode
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import (
    delete_container,
    refresh_services,
    restart_container,
    shutdown_container,
    start_container,
    stop_container,
)
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.simulator.helpers import create_ct, start_ct, wait_task
from tests.integration.worker.helpers import container, events, operation, request_action, request_container

ACTORS = {
    "start": start_container,
    "stop": stop_container,
    "shutdown": shutdown_container,
    "restart": restart_container,
    "refresh_services": refresh_services,
}
MUTATING = ("POST", "PUT", "DELETE")


def guest_state(node: RunningNode, vmid: int) -> tuple[str, dict[str, str], str | None]:
    guest = node.state.guests[vmid]
    return guest.status, dict(guest.config), guest.lock


def changes_to(node: RunningNode, vmid: int, since: int) -> list[tuple[str, str]]:
    """Requests after `since` that could have changed guest `vmid` (SSH commands are checked through its state)."""
    return [
        (r.method, r.path)
        for r in node.requests[since:]
        if (r.method in MUTATING and f"/lxc/{vmid}" in r.path) or (r.method == "POST" and r.path.endswith("/lxc"))
    ]


async def ready(ctx: WorkerContext, user: UserClient, template_id: str, vmid: int) -> str:
    container_id, op_id, _ = await request_container(user, template_id=template_id, vmid=vmid)
    await create_container(ctx, op_id)
    assert (await operation(ctx, op_id)).status == "succeeded"
    return container_id


async def set_config(sim_http: httpx.AsyncClient, vmid: int, **values: str) -> None:
    response = await sim_http.put(f"/nodes/pve/lxc/{vmid}/config", data=values)
    assert response.status_code == 200, response.text


async def test_the_create_call_carries_the_marker(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("marked")
    container_id, op_id, _ = await request_container(
        user_client, template_id=template_id, vmid=160, tags=["web"], description="My app\nsecond line"
    )
    await create_container(worker_ctx, op_id)
    assert (await operation(worker_ctx, op_id)).status == "succeeded"
    config = sim_node.state.guests[160].config
    ct = UUID(container_id)
    # Proxmox's normal form: lower-cased, sorted, joined with `;`; the description read back line by line.
    assert config["tags"] == ";".join(sorted([*marker_tags(ct), "web"]))
    assert config["description"] == f"{description_line(ct)}\nMy app\nsecond line\n"
    stored = await container(worker_ctx, container_id)
    assert stored is not None
    assert stored.pve_create_upid is not None
    assert stored.pve_create_upid.startswith("UPID:pve:")


async def test_marker_tags_and_lines_are_reserved_in_requests(
    user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    for body in (
        {"tags": ["infrahaus"]},
        {"tags": ["ok", "ih-0123456789ab"]},
        {"description": f"copied\n{description_line(uuid.uuid4())}"},
    ):
        response = await user_client.http.post(
            "/api/containers", json={"hostname": "x", "os_template": "local:vztmpl/x.tar.zst", **body}
        )
        assert response.status_code == 422, response.text
        assert "marker" in response.text or "reserved" in response.text


async def test_already_exists_fails_the_creation_without_touching_the_guest_and_delete_keeps_it(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("collides")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=161)
    # After the creation was accepted (the VMID was free), somebody makes a guest with that VMID on the node.
    await wait_task(sim_http, await create_ct(sim_http, 161, hostname="theirs", description="not infrahaus"))
    await start_ct(sim_http, 161)
    before = guest_state(sim_node, 161)
    since = len(sim_node.requests)

    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "vmid_taken"
    assert guest_state(sim_node, 161) == before
    assert changes_to(sim_node, 161, since) == [("POST", "/api2/json/nodes/pve/lxc")]  # the refused create only
    stored = await container(worker_ctx, container_id)
    assert stored is not None
    assert (stored.lifecycle, stored.pve_created_by_operation) == ("error", None)

    delete = await request_action(user_client, container_id, "delete")
    await delete_container(worker_ctx, delete)
    done = await operation(worker_ctx, delete)
    assert done.status == "succeeded", done.error
    assert done.result is not None
    assert (done.result["destroyed"], done.result["reason"]) == (False, "not_owned")
    assert "no infrahaus marker" in done.result["detail"]
    assert guest_state(sim_node, 161) == before  # the guest is intact on the node
    assert changes_to(sim_node, 161, since) == [("POST", "/api2/json/nodes/pve/lxc")]
    assert await container(worker_ctx, container_id) is None  # only our record went
    async with worker_ctx.session() as session:
        assert await session.scalar(select(VmidReservation).where(VmidReservation.vmid == 161)) is None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"delete": "tags,description"}, id="marker-removed"),
        pytest.param({"description": f"{description_line(uuid.uuid4())}\n"}, id="description-names-another"),
        pytest.param({"tags": f"infrahaus;{short_tag(uuid.uuid4())}"}, id="tag-names-another"),
    ],
)
async def test_every_lifecycle_action_refuses_a_guest_whose_marker_was_removed_or_changed(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
    tamper: dict[str, str],
) -> None:
    template_id = await make_template("tampered")
    container_id = await ready(worker_ctx, user_client, template_id, 162)
    await set_config(sim_http, 162, **tamper)
    for guest_status, actions in (
        ("running", ("stop", "shutdown", "restart", "refresh_services")),
        ("stopped", ("start",)),
    ):
        if sim_node.state.guests[162].status != guest_status:
            response = await sim_http.post(
                f"/nodes/pve/lxc/162/status/{'stop' if guest_status == 'stopped' else 'start'}"
            )
            await wait_task(sim_http, response.json()["data"])
        for action in actions:
            before = guest_state(sim_node, 162)
            since = len(sim_node.requests)
            op_id = await request_action(
                user_client, container_id, action.replace("refresh_services", "services/refresh")
            )
            await ACTORS[action](worker_ctx, op_id)
            op = await operation(worker_ctx, op_id)
            assert op.status == "failed", (action, op.status)
            assert op.error is not None
            assert op.error["code"] == "ownership_mismatch", (action, op.error)
            assert guest_state(sim_node, 162) == before, action
            assert changes_to(sim_node, 162, since) == [], action
            stored = await container(worker_ctx, container_id)
            assert stored is not None
            assert stored.last_error is not None
            assert stored.last_error["code"] == "ownership_mismatch"

    before = guest_state(sim_node, 162)
    delete = await request_action(user_client, container_id, "delete")
    await delete_container(worker_ctx, delete)
    done = await operation(worker_ctx, delete)
    assert done.status == "succeeded", done.error
    assert done.result is not None
    assert (done.result["destroyed"], done.result["reason"]) == (False, "not_owned")
    assert guest_state(sim_node, 162) == before
    assert await container(worker_ctx, container_id) is None


async def test_a_retry_refuses_a_guest_whose_marker_was_removed(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("fails-once", scripts=[("10-fail", "exit 4\n")])
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=163)
    await create_container(worker_ctx, op_id)
    assert (await operation(worker_ctx, op_id)).error["code"] == "script_failed"  # type: ignore[index]
    await set_config(sim_http, 163, delete="tags,description")
    before = guest_state(sim_node, 163)
    since = len(sim_node.requests)
    retry = await user_client.http.post(f"/api/containers/{container_id}/retry")
    assert retry.status_code == 202, retry.text
    await create_container(worker_ctx, retry.json()["id"])
    op = await operation(worker_ctx, retry.json()["id"])
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "ownership_mismatch"
    assert guest_state(sim_node, 163) == before
    assert changes_to(sim_node, 163, since) == []


async def _make_legacy(ctx: WorkerContext, sim_http: httpx.AsyncClient, container_id: str, vmid: int) -> None:
    """As a guest and record from before markers existed: no marker on the node, no create task id saved."""
    await set_config(sim_http, vmid, delete="tags,description")
    async with ctx.session() as session:
        await session.execute(update(Container).where(Container.id == UUID(container_id)).values(pve_create_upid=None))


async def test_a_guest_from_before_markers_gets_its_marker_when_its_creation_task_matches(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("legacy")
    container_id = await ready(worker_ctx, user_client, template_id, 164)
    await _make_legacy(worker_ctx, sim_http, container_id, 164)

    op_id = await request_action(user_client, container_id, "stop")
    await stop_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    config = sim_node.state.guests[164].config
    assert set(marker_tags(UUID(container_id))) <= set(config["tags"].split(";"))
    assert config["description"].startswith(description_line(UUID(container_id)))
    stored = await container(worker_ctx, container_id)
    assert stored is not None
    [create_task] = [t for t in sim_node.state.tasks.values() if t.type == "vzcreate" and t.id == "164"]
    assert stored.pve_create_upid == create_task.upid
    assert [e.type for e in await events(worker_ctx, container_id) if e.type == "marker_added"] == ["marker_added"]


async def test_a_guest_from_before_markers_recreated_by_someone_else_is_not_adopted(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("legacy-replaced")
    container_id = await ready(worker_ctx, user_client, template_id, 165)
    await _make_legacy(worker_ctx, sim_http, container_id, 165)
    # Outside infrahaus: the guest is destroyed and another one made with the same VMID (after our creation ended).
    response = await sim_http.post("/nodes/pve/lxc/165/status/stop")
    await wait_task(sim_http, response.json()["data"])
    response = await sim_http.delete("/nodes/pve/lxc/165", params={"purge": "1"})
    await wait_task(sim_http, response.json()["data"])
    async with worker_ctx.session() as session:
        # The creating operation ended long before the other guest was made.
        creator = await session.scalar(
            select(Operation).where(Operation.container_id == UUID(container_id), Operation.kind == "create")
        )
        assert creator is not None
        assert creator.started_at is not None
        assert creator.finished_at is not None
        creator.started_at -= timedelta(hours=2)
        creator.finished_at -= timedelta(hours=2)
    await wait_task(sim_http, await create_ct(sim_http, 165, hostname="replacement"))
    await start_ct(sim_http, 165)
    before = guest_state(sim_node, 165)

    op_id = await request_action(user_client, container_id, "stop")
    await stop_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "ownership_mismatch"
    assert guest_state(sim_node, 165) == before  # no marker added, not stopped
    async with worker_ctx.session() as session:
        added = await session.scalar(
            Event.__table__.select().where(Event.container_id == UUID(container_id), Event.type == "marker_added")
        )
        assert added is None


@pytest.mark.timings(lock_wait=2)
async def test_delete_of_a_record_whose_guest_is_a_half_created_leftover_of_someone_else_keeps_it(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    sim_http: httpx.AsyncClient,
) -> None:
    template_id = await make_template("leftover-delete")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=166)
    sim_node.faults.kill_next_task(166, "vzcreate")
    await wait_task(sim_http, await create_ct(sim_http, 166))
    await create_container(worker_ctx, op_id)
    assert (await operation(worker_ctx, op_id)).error["code"] == "vmid_taken"  # type: ignore[index]
    before = guest_state(sim_node, 166)
    delete = await request_action(user_client, container_id, "delete")
    await delete_container(worker_ctx, delete)
    done = await operation(worker_ctx, delete)
    assert done.status == "succeeded", done.error
    assert done.result is not None
    assert (done.result["destroyed"], done.result["reason"]) == (False, "not_owned")
    assert "lock: create" in done.result["detail"]
    assert guest_state(sim_node, 166) == before
    assert before[2] == "create"
