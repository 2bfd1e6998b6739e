"""GET /api/containers and /summary: live merge across nodes, filters, stable pagination, bad nodes, ownership."""

import asyncio
import time
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.api import UserClient, assert_problem
from tests.integration.containers_read.conftest import MIB, AddContainer, Fleet, add_operation


async def list_page(client: UserClient, **params: Any) -> dict[str, Any]:
    response = await client.http.get("/api/containers", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_items_merge_database_rows_with_live_state_of_every_node(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    running = await add_container("pve1", 200, status="running", ip_address="192.0.2.200")
    stopped = await add_container("pve2", 300, status="stopped")
    body = await list_page(user_client)

    assert body["unreachable_nodes"] == []
    assert body["next_cursor"] is None
    items = {item["id"]: item for item in body["items"]}
    assert [item["id"] for item in body["items"]] == [str(stopped.id), str(running.id)]  # newest first
    first = items[str(running.id)]
    assert first["node"] == {"id": str(fleet.node_ids["pve1"]), "name": "pve1"}
    assert (first["vmid"], first["hostname"], first["lifecycle"], first["status"]) == (200, "ct200", "ready", "running")
    assert first["ip_address"] == "192.0.2.200"
    assert first["template"] is None
    assert first["active_operation"] is None
    # No template: nothing to sync with.
    assert first["allowed_actions"] == ["stop", "shutdown", "restart", "refresh_services", "snapshot", "delete"]
    resources = first["resources"]
    assert resources["memory_max"] == 1024 * MIB
    assert 0 < resources["memory_used"] < resources["memory_max"]
    assert resources["disk_max"] == 8 * 1024 * MIB
    assert resources["cpu_percent"] == pytest.approx(1.2)
    assert resources["uptime_s"] >= 100

    second = items[str(stopped.id)]
    assert (second["status"], second["resources"]) == ("stopped", None)
    assert second["allowed_actions"] == ["start", "snapshot", "delete"]


async def test_each_node_is_asked_once_and_concurrently(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    for index, name in enumerate(("pve1", "pve2", "pve3")):
        await add_container(name, 200 + index)
        fleet.node(name).faults.latency = 0.4
        fleet.node(name).requests.clear()
    started = time.perf_counter()
    body = await list_page(user_client)
    elapsed = time.perf_counter() - started
    assert {item["status"] for item in body["items"]} == {"running"}
    for name in ("pve1", "pve2", "pve3"):
        assert [r.path for r in fleet.node(name).requests] == [f"/api2/json/nodes/{name}/lxc"]
    # Sequential asking would take at least 1.2 s.
    assert elapsed < 1.1


async def test_concurrent_lists_share_one_request_per_node(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    await add_container("pve1", 200)
    for name in ("pve1", "pve2", "pve3"):
        fleet.node(name).faults.latency = 0.3
        fleet.node(name).requests.clear()
    bodies = await asyncio.gather(*(list_page(user_client) for _ in range(4)))
    assert all(body["items"][0]["status"] == "running" for body in bodies)
    for name in ("pve1", "pve2", "pve3"):
        assert len([r for r in fleet.node(name).requests if r.path.endswith("/lxc")]) == 1


@pytest.mark.parametrize("read_settings", [{"inventory": {"cache_seconds": 0.0, "node_timeout": 0.8}}])
async def test_a_node_that_accepts_but_never_answers_is_reported_in_time(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    await add_container("pve1", 200)
    fleet.node("pve1").faults.blackhole = True
    started = time.perf_counter()
    response = await user_client.http.get("/api/containers/summary")
    assert time.perf_counter() - started < 2.5
    summary = response.json()
    assert summary["by_status"]["unknown"] == 1
    assert [n["name"] for n in summary["unreachable_nodes"]] == ["pve1"]
    assert [n["reachable"] for n in summary["nodes"]] == [False, True, True]


async def test_active_operation_and_lifecycles_decide_allowed_actions(
    user_client: UserClient, db: async_sessionmaker[AsyncSession], add_container: AddContainer
) -> None:
    creating = await add_container("pve1", 200, lifecycle="creating", guest=False)
    create_op = await add_operation(db, creating, "create")
    busy = await add_container("pve1", 201, status="running")
    await add_operation(db, busy, "stop", status="queued")
    failed = await add_container("pve1", 202, lifecycle="error", guest=False)
    deleting = await add_container("pve1", 203, lifecycle="deleting", status="stopped")

    items = {item["id"]: item for item in (await list_page(user_client))["items"]}
    assert items[str(creating.id)]["status"] == "unknown"
    assert items[str(creating.id)]["active_operation"]["id"] == str(create_op.id)
    assert items[str(creating.id)]["allowed_actions"] == ["delete"]
    assert items[str(busy.id)]["active_operation"]["kind"] == "stop"
    assert items[str(busy.id)]["allowed_actions"] == []
    assert items[str(failed.id)]["allowed_actions"] == ["retry", "delete"]
    assert items[str(deleting.id)]["allowed_actions"] == []


async def test_filters(user_client: UserClient, fleet: Fleet, add_container: AddContainer) -> None:
    response = await user_client.http.post("/api/templates", json={"name": "web-base"})
    assert response.status_code == 201, response.text
    template_id = uuid.UUID(response.json()["id"])
    web = await add_container("pve1", 200, hostname="Web-Frontend", template_id=template_id, ip_address="192.0.2.7")
    db_ct = await add_container("pve2", 300, status="stopped", hostname="db-main")
    broken = await add_container("pve2", 301, lifecycle="error", hostname="db-replica", guest=False)

    async def ids(**params: Any) -> list[str]:
        return [item["id"] for item in (await list_page(user_client, **params))["items"]]

    assert await ids(node_id=str(fleet.node_ids["pve2"])) == [str(broken.id), str(db_ct.id)]
    assert await ids(lifecycle="error") == [str(broken.id)]
    assert await ids(status="running") == [str(web.id)]
    assert await ids(status="unknown") == [str(broken.id)]
    assert await ids(template_id=str(template_id)) == [str(web.id)]
    assert await ids(q="web") == [str(web.id)]
    assert await ids(q="DB-") == [str(broken.id), str(db_ct.id)]
    assert await ids(q="300") == [str(db_ct.id)]
    assert await ids(q="192.0.2.7") == [str(web.id)]
    assert await ids(q="%") == []
    page = await list_page(user_client, node_id=str(fleet.node_ids["pve2"]), status="stopped")
    assert [item["id"] for item in page["items"]] == [str(db_ct.id)]
    web_item = (await list_page(user_client, q="web"))["items"][0]
    assert web_item["template"] == {"id": str(template_id), "name": "web-base"}

    for params in ({"status": "exploded"}, {"lifecycle": "gone"}, {"limit": 0}, {"limit": 501}, {"node_id": "x"}):
        assert_problem(await user_client.http.get("/api/containers", params=params), 422, "validation_failed")
    body = assert_problem(await user_client.http.get("/api/containers", params={"cursor": "bogus"}), 422)
    assert body["errors"][0]["field"] == "cursor"


async def test_pages_neither_repeat_nor_skip_while_containers_are_created(
    user_client: UserClient, add_container: AddContainer
) -> None:
    existing = [await add_container("pve1" if i % 2 else "pve2", 200 + i) for i in range(23)]
    expected = [str(c.id) for c in reversed(existing)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor is not None:
            params["cursor"] = cursor
        body = await list_page(user_client, **params)
        seen.extend(item["id"] for item in body["items"])
        pages += 1
        # A creation between page fetches sorts before the cursor: the walk stays exactly the original set.
        await add_container("pve3", 500 + pages)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 5
    # A fresh first page shows the new ones first.
    fresh = await list_page(user_client, limit=3)
    assert [item["vmid"] for item in fresh["items"]] == [505, 504, 503]


async def test_status_filter_pages_over_the_merged_status(user_client: UserClient, add_container: AddContainer) -> None:
    containers = [
        await add_container("pve1", 200 + i, status="running" if i % 3 == 0 else "stopped") for i in range(30)
    ]
    expected = [str(c.id) for c in reversed(containers) if c.vmid % 3 == 2]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 4, "status": "running"}
        if cursor is not None:
            params["cursor"] = cursor
        body = await list_page(user_client, **params)
        assert len(body["items"]) <= 4
        assert {item["status"] for item in body["items"]} <= {"running"}
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert len(seen) == 10


@pytest.mark.parametrize("read_settings", [{"inventory": {"cache_seconds": 0.0, "node_timeout": 0.8}}])
async def test_unreachable_and_slow_nodes_do_not_fail_the_list(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    fine = await add_container("pve1", 200)
    down = await add_container("pve2", 300)
    slow = await add_container("pve3", 400)
    fleet.node("pve2").faults.unreachable = True
    fleet.node("pve3").faults.latency = 5.0

    started = time.perf_counter()
    body = await list_page(user_client)
    elapsed = time.perf_counter() - started

    # Bounded by the per-node timeout (0.8 s), not by the slow node's 5 s.
    assert elapsed < 2.5
    status = {item["id"]: item["status"] for item in body["items"]}
    assert status == {str(fine.id): "running", str(down.id): "unknown", str(slow.id): "unknown"}
    unreachable = {n["name"]: n for n in body["unreachable_nodes"]}
    assert set(unreachable) == {"pve2", "pve3"}
    assert unreachable["pve2"]["id"] == str(fleet.node_ids["pve2"])
    assert "reached" in unreachable["pve2"]["error"]
    assert "0.8 s" in unreachable["pve3"]["error"]
    unknown_item = next(item for item in body["items"] if item["id"] == str(down.id))
    assert (unknown_item["resources"], unknown_item["allowed_actions"]) == (None, ["delete"])

    summary = (await user_client.http.get("/api/containers/summary")).json()
    assert summary["by_status"] == {"running": 1, "stopped": 0, "paused": 0, "unknown": 2}
    assert {n["name"] for n in summary["unreachable_nodes"]} == {"pve2", "pve3"}

    # The node comes back: the next list sees it again (no cache in this test).
    fleet.node("pve2").faults.unreachable = False
    fleet.node("pve3").faults.latency = 0.0
    body = await list_page(user_client)
    assert {item["status"] for item in body["items"]} == {"running"}
    assert body["unreachable_nodes"] == []


async def test_containers_deleted_outside_the_product_show_unknown(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    gone = await add_container("pve1", 200)
    del fleet.node("pve1").state.guests[200]
    body = await list_page(user_client)
    [item] = body["items"]
    assert (item["id"], item["status"], item["resources"]) == (str(gone.id), "unknown", None)
    assert body["unreachable_nodes"] == []


@pytest.mark.parametrize("read_settings", [{"inventory": {"cache_seconds": 30.0, "node_timeout": 1.0}}])
async def test_rapid_lists_reuse_each_nodes_answer(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    await add_container("pve1", 200)
    for name in ("pve1", "pve2", "pve3"):
        fleet.node(name).requests.clear()
    for _ in range(3):
        assert (await list_page(user_client))["items"][0]["status"] == "running"
    await user_client.http.get("/api/containers/summary")
    for name in ("pve1", "pve2", "pve3"):
        assert len([r for r in fleet.node(name).requests if r.path.endswith("/lxc")]) == 1


async def test_summary_counts(user_client: UserClient, fleet: Fleet, add_container: AddContainer) -> None:
    await add_container("pve1", 200)
    await add_container("pve1", 201, status="stopped")
    await add_container("pve2", 300, lifecycle="creating", guest=False)
    await add_container("pve2", 301, lifecycle="error", status="stopped")
    response = await user_client.http.get("/api/containers/summary")
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["total"] == 4
    assert summary["by_lifecycle"] == {"creating": 1, "ready": 2, "error": 1, "deleting": 0}
    assert summary["by_status"] == {"running": 1, "stopped": 2, "paused": 0, "unknown": 1}
    nodes = {n["name"]: n for n in summary["nodes"]}
    assert nodes["pve1"] == {
        "id": str(fleet.node_ids["pve1"]),
        "name": "pve1",
        "total": 2,
        "by_status": {"running": 1, "stopped": 1},
        "reachable": True,
    }
    assert nodes["pve2"]["by_status"] == {"unknown": 1, "stopped": 1}
    assert nodes["pve3"]["total"] == 0
    assert summary["unreachable_nodes"] == []


async def test_other_users_see_nothing(
    user_client: UserClient, other_user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    await add_container("pve1", 200)
    body = await list_page(other_user_client)
    assert body == {"items": [], "next_cursor": None, "unreachable_nodes": []}
    summary = (await other_user_client.http.get("/api/containers/summary")).json()
    assert (summary["total"], summary["nodes"]) == (0, [])
    # Another user's node as a filter is just an empty list, not a way to probe it.
    assert (await list_page(other_user_client, node_id=str(fleet.node_ids["pve1"])))["items"] == []


@pytest.mark.parametrize("read_settings", [{"inventory": {"cache_seconds": 60.0, "node_timeout": 2.0}}])
async def test_an_invalidation_reaches_a_request_to_the_node_still_in_flight(
    app: Any, user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    """A read that began before an operation changed the guest must neither hand its answer to later reads nor cache
    it (another process publishes the invalidation; this process only hears it)."""
    from infrahaus_domain.containers.inventory import inventory_key
    from infrahaus_domain.ports import build_ports

    await add_container("pve1", 200, status="running")
    node, node_id = fleet.node("pve1"), fleet.node_ids["pve1"]
    node.faults.latency = 0.6
    inventory, cache = app.state.resources.inventory, app.state.resources.ports.cache
    early = asyncio.create_task(list_page(user_client, node_id=str(node_id)))
    deadline = time.monotonic() + 5
    # White box: the process's one shared request to the node has begun (the simulator records requests only when
    # it answers them).
    while not any(key[0] == node_id for key in inventory._inflight):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    settings = app.state.resources.settings
    other = build_ports(settings.redis.url, settings.redis.prefix)
    try:
        await other.invalidation.publish("inventory", str(node_id))
    finally:
        await other.close()
    deadline = time.monotonic() + 5
    while any(key[0] == node_id for key in inventory._inflight):  # pub/sub delivery to the API process
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    later = asyncio.create_task(list_page(user_client, node_id=str(node_id)))
    await early
    assert await cache.get(inventory_key(node_id)) is None  # the early answer was not cached
    await later
    assert len([r for r in node.requests if r.path.endswith("/lxc")]) == 2  # the later read asked on its own
    assert await cache.get(inventory_key(node_id)) is not None
