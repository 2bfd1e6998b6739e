"""Read your writes: once an operation succeeded, every read shows its result, although the node's answers are cached
for a minute here (the API process and the worker share Redis, as two processes of a deployment do)."""

import time
from typing import Any
from uuid import UUID

import msgspec
import pytest

from infrahaus_domain.containers.inventory import LiveGuest, NodeSnapshot, inventory_key, node_version
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.settings import Settings
from infrahaus_domain.vmids.service import vmids_cache_key
from infrahaus_pvesim import RunningNode
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import restart_container, shutdown_container, start_container, stop_container
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import operation, request_action, request_container

ACTORS = {
    "start": start_container,
    "stop": stop_container,
    "shutdown": shutdown_container,
    "restart": restart_container,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Node answers reused for a minute: a stale read would show for far longer than any test waits."""
    return settings.replace(inventory={"cache_seconds": 60.0})


async def reads(user: UserClient, container_id: str, node_id: str, vmid: int) -> dict[str, Any]:
    """What every read path answers about the container, one request each."""
    detail = (await user.http.get(f"/api/containers/{container_id}")).json()
    [item] = (await user.http.get("/api/containers")).json()["items"]
    summary = (await user.http.get("/api/containers/summary")).json()
    vmid_check = (await user.http.get(f"/api/nodes/{node_id}/vmids/{vmid}")).json()
    statuses = {detail["status"], item["status"]}
    assert len(statuses) == 1, (detail["status"], item["status"])
    [status] = statuses
    assert summary["by_status"][status] == 1, summary
    return {"status": status, "allowed": detail["allowed_actions"], "vmid": vmid_check}


async def test_every_read_after_an_operation_shows_its_result(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("plain")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=150)
    node_id = registered_node["id"]
    # Read (and so cache) the node before the guest exists.
    before = await reads(user_client, container_id, node_id, 150)
    assert before["status"] == "unknown"
    assert before["vmid"] == {"vmid": 150, "available": False, "reason": "reserved"}

    await create_container(worker_ctx, op_id)
    assert (await operation(worker_ctx, op_id)).status == "succeeded"
    after = await reads(user_client, container_id, node_id, 150)
    assert after["status"] == "running"
    assert after["vmid"] == {"vmid": 150, "available": False, "reason": "taken"}

    for action, expected in (
        ("stop", "stopped"),
        ("start", "running"),
        ("shutdown", "stopped"),
        ("start", "running"),
        ("restart", "running"),
    ):
        await reads(user_client, container_id, node_id, 150)  # the cache holds the state before the action
        op = await request_action(user_client, container_id, action)
        await ACTORS[action](worker_ctx, op)
        assert (await operation(worker_ctx, op)).status == "succeeded"
        assert sim_node.state.guests[150].status == expected
        # The node's cached answers are gone for every process: the next read asks the node.
        assert await worker_ctx.ports.cache.get(inventory_key(UUID(node_id))) is None
        assert not await worker_ctx.ports.cache.exists(vmids_cache_key(UUID(node_id)))
        now = await reads(user_client, container_id, node_id, 150)
        assert now["status"] == expected, action
        assert ("start" in now["allowed"]) == (expected == "stopped"), now["allowed"]


async def test_a_node_answer_fetched_before_the_operation_ended_yields_to_its_result(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    settings: Settings,
) -> None:
    """An API process whose request to the node was in flight while the operation finished writes that older answer
    into the shared cache after the invalidation; reads must still show the operation's result."""
    template_id = await make_template("plain")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=151)
    await create_container(worker_ctx, op_id)
    fetched_at = time.time()
    stale = NodeSnapshot(
        guests={151: LiveGuest(vmid=151, status="running", maxmem=512 * 1024**2)},
        fetched_at=fetched_at - 2,
        version=await _node_version(worker_ctx, registered_node["id"]),
    )
    stop = await request_action(user_client, container_id, "stop")
    await stop_container(worker_ctx, stop)
    await worker_ctx.ports.cache.set(inventory_key(UUID(registered_node["id"])), msgspec.msgpack.encode(stale), ttl=60)

    detail = (await user_client.http.get(f"/api/containers/{container_id}")).json()
    assert detail["status"] == "stopped"
    assert detail["resources"] is None
    assert "start" in detail["allowed_actions"]

    # A snapshot fetched after the operation is the node's truth again (here: someone started it meanwhile).
    fresh = msgspec.structs.replace(stale, fetched_at=time.time() + 5)
    await worker_ctx.ports.cache.set(inventory_key(UUID(registered_node["id"])), msgspec.msgpack.encode(fresh), ttl=60)
    assert (await user_client.http.get(f"/api/containers/{container_id}")).json()["status"] == "running"


async def _node_version(ctx: WorkerContext, node_id: str) -> str:
    async with ctx.session() as session:
        return node_version(await session.get_one(Node, UUID(node_id)))
