"""Creation pipeline in-process: API request -> actor function -> simulator over real sockets."""

from pathlib import Path
from typing import Any

from sqlalchemy import select

from infrahaus_domain.models.containers import DiscoveredService, ServiceCredential
from infrahaus_pvesim import RunningNode
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import container, events, operation, request_container


def rootfs(node: RunningNode, vmid: int) -> Path:
    guest = node.state.guests[vmid]
    assert guest.rootfs is not None
    return guest.rootfs


async def services_of(ctx: WorkerContext, container_id: str) -> tuple[dict[str, DiscoveredService], dict[str, str]]:
    async with ctx.session() as session:
        services = (
            await session.scalars(select(DiscoveredService).where(DiscoveredService.container_id == container_id))
        ).all()
        creds = (
            await session.scalars(select(ServiceCredential).where(ServiceCredential.container_id == container_id))
        ).all()
        return {s.name: s for s in services}, {f"{c.service}/{c.key}": c.value for c in creds}


async def test_web_hello_reaches_ready(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    sim_node: RunningNode,
) -> None:
    template = templates["web-hello"]
    container_id, op_id, _ = await request_container(user_client, template_id=template["id"], vmid=120)
    await create_container(worker_ctx, op_id)

    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.progress == 100
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "ready"
    assert ct.ip_address
    assert ct.pve_created_by_operation is not None

    # Steps in pipeline order, each entered once.
    trail = await events(worker_ctx, container_id)
    entered: list[str] = []
    for event in trail:
        step = event.meta.get("step")
        if event.type == "step" and step and (not entered or entered[-1] != step):
            entered.append(step)
    assert entered == ["create", "start", "prepare", "files", "packages", "scripts", "discover"]
    assert any(e.type == "script_completed" and e.meta["script"] == "00-web" for e in trail)
    assert any(e.type == "created" for e in trail), [(e.type, e.message) for e in trail]

    # The file (policy default, absent before) and the package landed in the container.
    root = rootfs(sim_node, 120)
    assert "Hello from infrahaus" in (root / "srv/www/index.html").read_text()
    assert "Package: busybox" in (root / "var/lib/dpkg/status").read_text()
    # Scripts and helper library were cleaned up.
    assert not [p for p in (root / "tmp").iterdir() if p.name.startswith("infrahaus-")]

    # The script's output was streamed line by line into the log buffer.
    lines = await worker_ctx.logbuffer.lines(ct.id)
    script_lines = [entry.line for entry in lines if entry.script == "00-web"]
    assert any("web-hello is serving /srv/www on port 8080" in line for line in script_lines)

    # Discovery found the unit on its port, with its credentials stored encrypted.
    services, creds = await services_of(worker_ctx, container_id)
    assert services["web"].port == 8080
    assert not services["web"].is_system
    assert set(creds) == {"web/admin_user", "web/admin_password"}
    assert worker_ctx.box.decrypt(creds["web/admin_user"]) == "admin"
    saved = (root / "etc/infrahaus/credentials/web").read_text()
    password = worker_ctx.box.decrypt(creds["web/admin_password"])
    assert f"admin_password={password}\n" in saved
    assert password not in creds["web/admin_password"]


async def test_app_stack_runs_scripts_in_order_with_both_managers(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    sim_node: RunningNode,
) -> None:
    template = templates["app-stack"]
    container_id, op_id, _ = await request_container(user_client, template_id=template["id"], vmid=121)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error

    trail = await events(worker_ctx, container_id)
    completed = [e.meta["script"] for e in trail if e.type == "script_completed"]
    assert completed == ["00-base", "10-user", "20-app", "30-service"]
    managers = [e.meta["manager"] for e in trail if e.type == "step" and "manager" in e.meta]
    assert managers == ["apt", "pip"]
    assert all(e.meta["ok"] for e in trail if e.type == "step" and "manager" in e.meta)

    root = rootfs(sim_node, 121)
    assert (root / "etc/app-stack/app.env").read_text().startswith("# Managed by infrahaus")
    assert "greeting = Hello from app-stack" in (root / "opt/app/settings.ini").read_text()
    assert "This container runs app-stack" in (root / "etc/motd").read_text()

    services, creds = await services_of(worker_ctx, container_id)
    assert services["app-stack"].port == 8081
    assert {"app-stack/secret_key", "app-stack/admin_user", "app-stack/admin_password"} <= set(creds)
