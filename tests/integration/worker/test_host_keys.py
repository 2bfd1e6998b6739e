"""SSH host keys are pinned by whichever path connects first (the worker, preflight, service logs, the connection
test) and verified by every later connection on every path."""

import asyncio
import uuid
from typing import Any

import asyncssh
import pytest
from sqlalchemy import update

from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import HostKeyPins, NodeEndpoint
from infrahaus_proxmox.pct import SshHostKeyMismatch
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import refresh_services
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient, assert_problem
from tests.integration.worker.helpers import operation, request_action, request_container

OTHER_HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


async def pinned_key(ctx: WorkerContext, node_id: str) -> str | None:
    async with ctx.session() as session:
        node = await session.get(Node, uuid.UUID(node_id))
        assert node is not None
        return node.ssh_host_key


async def forget_pin(ctx: WorkerContext, node_id: str) -> None:
    async with ctx.session() as session:
        await session.execute(update(Node).where(Node.id == uuid.UUID(node_id)).values(ssh_host_key=None))


async def test_the_worker_pins_the_first_key_and_refuses_another(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
) -> None:
    node_id = registered_node["id"]
    assert await pinned_key(worker_ctx, node_id) is None
    container_id, op_id, _ = await request_container(user_client, template_id=templates["web-hello"]["id"], vmid=150)
    await create_container(worker_ctx, op_id)
    assert (await operation(worker_ctx, op_id)).status == "succeeded"
    first = await pinned_key(worker_ctx, node_id)
    assert first is not None
    assert first.startswith("ssh-")

    # Someone else answers on the node's SSH address now (the pin no longer matches): every SSH path refuses.
    changed = await user_client.http.patch(f"/api/nodes/{node_id}", json={"ssh_host_key": OTHER_HOST_KEY})
    assert changed.status_code == 200, changed.text
    op_id = await request_action(user_client, container_id, "services/refresh")
    await refresh_services(worker_ctx, op_id)
    failed = await operation(worker_ctx, op_id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["code"] == "ssh_host_key_mismatch", failed.error

    logs = await user_client.http.get(f"/api/containers/{container_id}/services/web/logs")
    assert_problem(logs, 502, "ssh_host_key_mismatch")
    tested = (await user_client.http.post(f"/api/nodes/{node_id}/test")).json()
    assert tested["ssh"]["code"] == "ssh_host_key_mismatch"
    preflight = await user_client.http.post(
        "/api/containers/preflight", json={"hostname": "other", "template_id": templates["web-hello"]["id"]}
    )
    ssh_check = next(c for c in preflight.json()["checks"] if c["name"] == "ssh")
    assert ssh_check["ok"] is False
    assert await pinned_key(worker_ctx, node_id) == OTHER_HOST_KEY


async def test_service_logs_pin_the_first_key(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
) -> None:
    node_id = registered_node["id"]
    container_id, op_id, _ = await request_container(user_client, template_id=templates["web-hello"]["id"], vmid=151)
    await create_container(worker_ctx, op_id)
    first = await pinned_key(worker_ctx, node_id)
    await forget_pin(worker_ctx, node_id)
    logs = await user_client.http.get(f"/api/containers/{container_id}/services/web/logs")
    assert logs.status_code == 200, logs.text
    assert await pinned_key(worker_ctx, node_id) == first


@pytest.mark.usefixtures("registered_node")
async def test_preflight_pins_the_first_key(worker_ctx: WorkerContext, user_client: UserClient) -> None:
    node_id = (await user_client.http.get("/api/nodes")).json()["items"][0]["id"]
    assert await pinned_key(worker_ctx, node_id) is None
    preflight = await user_client.http.post(
        "/api/containers/preflight",
        json={"hostname": "pf", "os_template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"},
    )
    assert next(c for c in preflight.json()["checks"] if c["name"] == "ssh")["ok"] is True
    assert (await pinned_key(worker_ctx, node_id) or "").startswith("ssh-")


async def test_two_first_connections_cannot_both_pin(
    worker_ctx: WorkerContext, registered_node: dict[str, Any]
) -> None:
    """Two paths connecting for the first time at once: the second must have met the key the first one stored."""
    node_id = uuid.UUID(registered_node["id"])
    async with worker_ctx.session() as session:
        node = await session.get(Node, node_id)
        assert node is not None
        endpoint = NodeEndpoint.from_node(node, worker_ctx.box)
    pins = HostKeyPins(worker_ctx.sessionmaker)
    real = OTHER_HOST_KEY
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    outcomes = await asyncio.gather(pins.pin(endpoint, real), pins.pin(endpoint, impostor), return_exceptions=True)
    assert sum(isinstance(o, SshHostKeyMismatch) for o in outcomes) == 1
    assert await pinned_key(worker_ctx, str(node_id)) in {real, impostor}
    # The same key again (a reconnect, another path) is fine.
    await pins.pin(endpoint, await pinned_key(worker_ctx, str(node_id)) or "")
