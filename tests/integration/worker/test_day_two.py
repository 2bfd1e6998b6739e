"""Day two end to end on the simulator: template revisions, drift, sync, snapshots and automatic rollback.

Requests go through the API (as a client would), each operation is run by awaiting its actor, and what a test says
about the container's files is checked inside it with `pct exec` over the node's SSH host.
"""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from infrahaus_proxmox.pct import PctExecRunner, SshTarget
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.config import DEMO_PASSWORD, DEMO_SSH_USER
from infrahaus_pvesim.state import SimStorage
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import (
    create_snapshot,
    delete_snapshot,
    rollback_snapshot,
    start_container,
    stop_container,
)
from infrahaus_worker.actors.sync import sync_container
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient, assert_problem
from tests.integration.worker.helpers import events, operation, request_action, request_container

OS_TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
CONF = "/etc/app/app.conf"


def template_body(
    name: str, *, conf: str, script: str, packages: list[str], storage: str = "local-lvm"
) -> dict[str, Any]:
    return {
        "name": name,
        "os_template": OS_TEMPLATE,
        "storage": storage,
        "files": [
            {"name": "app.conf", "target_path": "/etc/app", "content": conf, "policy": "replace", "mode": "0640"},
            {"name": "motd", "target_path": "/etc", "content": "hello\n", "policy": "default"},
        ],
        "packages": [{"name": p, "manager": "apt"} for p in packages],
        "scripts": [{"name": "10-setup", "content": script, "position": 0}],
    }


@pytest.fixture
async def inside(sim_node: RunningNode) -> AsyncIterator[PctExecRunner]:
    """`pct exec` into the simulated node's containers, as an operator on the node would."""
    target = SshTarget(
        host="127.0.0.1",
        port=sim_node.ssh_port,
        username=DEMO_SSH_USER,
        password=DEMO_PASSWORD,
        host_key=sim_node.ssh_host_key,
    )
    runner = PctExecRunner(target)
    try:
        yield runner
    finally:
        await runner.aclose()


async def read_inside(runner: PctExecRunner, vmid: int, path: str) -> str | None:
    result = await runner.exec(
        vmid, ["sh", "-c", 'cat -- "$1" 2>/dev/null || echo "<absent>"', "read", path], timeout=30
    )
    text = "\n".join(result.stdout)
    return None if text == "<absent>" else text


async def make(user: UserClient, **body: Any) -> dict[str, Any]:
    response = await user.http.post("/api/templates", json=template_body(**body))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def change(user: UserClient, template_id: str, **body: Any) -> dict[str, Any]:
    response = await user.http.put(f"/api/templates/{template_id}", json=template_body(**body))
    assert response.status_code == 200, response.text
    changed: dict[str, Any] = response.json()
    return changed


async def created(ctx: WorkerContext, user: UserClient, template_id: str, vmid: int, **extra: Any) -> str:
    container_id, op_id, _ = await request_container(user, template_id=template_id, vmid=vmid, **extra)
    await create_container(ctx, op_id)
    op = await operation(ctx, op_id)
    assert op.status == "succeeded", op.error
    return container_id


async def sync(ctx: WorkerContext, user: UserClient, container_id: str, **body: Any) -> Any:
    response = await user.http.post(f"/api/containers/{container_id}/sync", json=body or None)
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "sync"
    await sync_container(ctx, response.json()["id"])
    return await operation(ctx, response.json()["id"])


async def drift(user: UserClient, container_id: str, **params: Any) -> dict[str, Any]:
    response = await user.http.get(f"/api/containers/{container_id}/drift", params={"refresh": "true", **params})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def result(op: Any) -> dict[str, Any]:
    assert op.result is not None, op.error
    found: dict[str, Any] = op.result
    return found


def error(op: Any) -> dict[str, Any]:
    assert op.error is not None, op.result
    found: dict[str, Any] = op.error
    return found


def not_same(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["kind"], i["name"]): i for i in report["items"] if i["state"] != "same"}


@pytest.mark.usefixtures("registered_node")
async def test_revision_drift_sync_and_a_rolled_back_sync(
    worker_ctx: WorkerContext, user_client: UserClient, sim_node: RunningNode, inside: PctExecRunner
) -> None:
    http = user_client.http
    template = await make(user_client, name="app", conf="version=1\n", script="echo one", packages=["busybox"])
    assert template["revision"] == 1
    container_id = await created(worker_ctx, user_client, template["id"], 140)
    detail = (await http.get(f"/api/containers/{container_id}")).json()
    assert detail["revisions"] == {"created_from": 1, "synced_to": None, "latest": 1, "sync_on_start": False}
    assert {"sync", "snapshot"} <= set(detail["allowed_actions"])

    # Against the revision it was made from, nothing differs.
    report = await drift(user_client, container_id)
    assert report["in_sync"], not_same(report)
    assert report["revision"] == 1
    kinds = {i["kind"] for i in report["items"]}
    assert kinds == {"file", "package", "script", "config"}

    # A user edit of a `default` file is not drift; of a `replace` file it is.
    await inside.exec(140, ["sh", "-c", "echo mine > /etc/motd"], timeout=30)
    assert not_same(await drift(user_client, container_id)) == {}

    # Change the template: a new revision.
    changed = await change(
        user_client, template["id"], name="app", conf="version=2\n", script="echo two", packages=["busybox", "jq"]
    )
    assert changed["revision"] == 2
    revisions = (await http.get(f"/api/templates/{template['id']}/revisions")).json()["items"]
    assert [r["number"] for r in revisions] == [2, 1]
    assert revisions[1]["containers"] == 1

    report = await drift(user_client, container_id, revision="latest")
    differs = not_same(report)
    assert report["revision"] == 2
    assert report["applied_revision"] == 1
    assert differs[("file", CONF)]["state"] == "changed"
    assert "content differs" in differs[("file", CONF)]["detail"]
    assert ("package", "apt:jq") in differs, [i for i in report["items"] if i["kind"] == "package"]
    assert differs[("package", "apt:jq")]["state"] == "missing"
    assert differs[("script", "10-setup")]["state"] == "changed"
    assert set(differs) == {("file", CONF), ("package", "apt:jq"), ("script", "10-setup")}

    # The answer is reused until refreshed, and any operation makes it stale.
    again = await http.get(f"/api/containers/{container_id}/drift", params={"revision": "latest"})
    assert again.json()["cached"] is True

    # Sync to the newest revision: drift is empty afterwards.
    op = await sync(worker_ctx, user_client, container_id)
    assert op.status == "succeeded", op.error
    assert result(op)["revision"] == 2
    assert result(op)["scripts_run"] == ["10-setup"]
    assert result(op)["snapshot"] == {"method": "snapshot", "name": result(op)["snapshot"]["name"], "kept": False}
    assert await read_inside(inside, 140, CONF) == "version=2"
    report = await drift(user_client, container_id, revision="latest")
    assert report["in_sync"], not_same(report)
    assert not_same(await drift(user_client, container_id)) == {}
    detail = (await http.get(f"/api/containers/{container_id}")).json()
    assert detail["revisions"]["synced_to"] == 2
    # The automatic snapshot is gone again.
    assert (await http.get(f"/api/containers/{container_id}/snapshots")).json()["items"] == []

    # A sync whose script fails rolls the container back: the file it wrote is restored inside the container.
    await change(
        user_client, template["id"], name="app", conf="version=3\n", script="echo broken; exit 3", packages=["busybox"]
    )
    op = await sync(worker_ctx, user_client, container_id)
    assert op.status == "failed"
    assert error(op)["code"] == "script_failed"
    assert error(op)["exit_code"] == 3
    assert result(op)["rolled_back"] is True
    assert result(op)["snapshot"]["method"] == "snapshot"
    assert await read_inside(inside, 140, CONF) == "version=2"
    status = (await http.get(f"/api/containers/{container_id}")).json()
    assert status["status"] == "running"
    assert status["revisions"]["synced_to"] == 2
    assert (await http.get(f"/api/containers/{container_id}/snapshots")).json()["items"] == []

    trail = await events(worker_ctx, container_id)
    types = [e.type for e in trail]
    assert "synced" in types
    assert "rolled_back" in types
    rolled = next(e for e in trail if e.type == "rolled_back")
    assert rolled.meta["method"] == "snapshot"


@pytest.mark.usefixtures("registered_node")
async def test_a_failed_sync_on_a_directory_storage_restores_the_file_backups(
    worker_ctx: WorkerContext, user_client: UserClient, sim_node: RunningNode, inside: PctExecRunner
) -> None:
    sim_node.state.storages["local-dir"] = SimStorage(
        name="local-dir", type="dir", content={"rootdir", "images"}, used=0
    )
    template = await make(
        user_client, name="dir-app", conf="version=1\n", script="echo one", packages=[], storage="local-dir"
    )
    container_id = await created(worker_ctx, user_client, template["id"], 141)
    # Revision 2 writes the file differently, adds one that did not exist, and its script fails.
    body = template_body(name="dir-app", conf="version=2\n", script="exit 7", packages=[], storage="local-dir")
    body["files"].append({"name": "new.conf", "target_path": "/etc/app", "content": "new\n", "policy": "replace"})
    body["cores"] = 2
    response = await user_client.http.put(f"/api/templates/{template['id']}", json=body)
    assert response.status_code == 200, response.text

    op = await sync(worker_ctx, user_client, container_id)
    assert op.status == "failed"
    assert error(op)["code"] == "script_failed"
    assert result(op)["rolled_back"] is True
    assert result(op)["snapshot"]["method"] == "files"
    assert sorted(result(op)["snapshot"]["files"]) == ["/etc/app/app.conf", "/etc/app/new.conf", "/etc/motd"]
    assert result(op)["restored"] == ["files", "config"]
    assert await read_inside(inside, 141, CONF) == "version=1"
    assert await read_inside(inside, 141, "/etc/app/new.conf") is None
    mode = await inside.exec(141, ["stat", "-c", "%a", CONF], timeout=30)
    assert mode.stdout == ["640"]
    config = (await user_client.http.get(f"/api/containers/{container_id}")).json()["config"]
    assert config["cores"] == 1
    # No backup directory is left behind.
    assert await read_inside(inside, 141, "/var/lib/infrahaus/backups") is None
    trail = await events(worker_ctx, container_id)
    assert any(e.type == "rolled_back" and e.meta["method"] == "files" for e in trail)

    # A manual snapshot is refused there.
    response = await user_client.http.post(f"/api/containers/{container_id}/snapshots", json={"name": "manual"})
    assert response.status_code == 202, response.text
    await create_snapshot(worker_ctx, response.json()["id"])
    op = await operation(worker_ctx, response.json()["id"])
    assert op.status == "failed"
    assert error(op)["code"] == "snapshot_unsupported"


@pytest.mark.usefixtures("registered_node")
async def test_manual_snapshot_rollback_and_delete(
    worker_ctx: WorkerContext, user_client: UserClient, sim_node: RunningNode, inside: PctExecRunner
) -> None:
    http = user_client.http
    template = await make(user_client, name="snap-app", conf="version=1\n", script="echo one", packages=[])
    container_id = await created(worker_ctx, user_client, template["id"], 142)

    response = await http.post(
        f"/api/containers/{container_id}/snapshots", json={"name": "before-edit", "description": "known good"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "snapshot_create"
    await create_snapshot(worker_ctx, response.json()["id"])
    assert (await operation(worker_ctx, response.json()["id"])).status == "succeeded"
    listed = (await http.get(f"/api/containers/{container_id}/snapshots")).json()
    assert [(s["name"], s["description"], s["automatic"]) for s in listed["items"]] == [
        ("before-edit", "known good", False)
    ]
    assert listed["supported"] is True
    assert listed["current_parent"] == "before-edit"

    # One operation at a time per container.
    busy = await http.post(f"/api/containers/{container_id}/snapshots/before-edit/rollback")
    assert busy.status_code == 202
    assert_problem(await http.delete(f"/api/containers/{container_id}/snapshots/before-edit"), 409, "container_busy")
    await inside.exec(142, ["sh", "-c", f"echo edited > {CONF}"], timeout=30)
    await rollback_snapshot(worker_ctx, busy.json()["id"])
    op = await operation(worker_ctx, busy.json()["id"])
    assert op.status == "succeeded", op.error
    assert op.result == {"name": "before-edit", "status": "running", "started": True}
    assert await read_inside(inside, 142, CONF) == "version=1"

    deleted = await http.delete(f"/api/containers/{container_id}/snapshots/before-edit")
    assert deleted.status_code == 202, deleted.text
    await delete_snapshot(worker_ctx, deleted.json()["id"])
    assert (await operation(worker_ctx, deleted.json()["id"])).status == "succeeded"
    assert (await http.get(f"/api/containers/{container_id}/snapshots")).json()["items"] == []

    # A snapshot that is not there fails not_found; bad names are refused up front.
    missing = await http.post(f"/api/containers/{container_id}/snapshots/nope/rollback", json={"start": False})
    await rollback_snapshot(worker_ctx, missing.json()["id"])
    op = await operation(worker_ctx, missing.json()["id"])
    assert (op.status, error(op)["code"]) == ("failed", "not_found")
    assert_problem(await http.post(f"/api/containers/{container_id}/snapshots", json={"name": "current"}), 422)
    assert_problem(await http.post(f"/api/containers/{container_id}/snapshots", json={"name": "1x"}), 422)
    assert_problem(await http.delete(f"/api/containers/{container_id}/snapshots/a.b"), 422)

    types = [e.type for e in await events(worker_ctx, container_id)]
    assert {"snapshot_created", "snapshot_rolled_back", "snapshot_deleted"} <= set(types)


@pytest.mark.usefixtures("registered_node")
async def test_a_creation_with_snapshot_before_scripts_is_rolled_back_when_a_script_fails(
    worker_ctx: WorkerContext, user_client: UserClient, sim_node: RunningNode, inside: PctExecRunner
) -> None:
    script = f"echo broken > {CONF}; echo half > /etc/half-done; exit 5"
    template = await make(user_client, name="bad-app", conf="version=1\n", script=script, packages=[])
    container_id, op_id, _ = await request_container(
        user_client, template_id=template["id"], vmid=143, snapshot_before_scripts=True
    )
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert error(op)["code"] == "script_failed"
    assert result(op)["rolled_back"] is True
    assert result(op)["snapshot"]["method"] == "snapshot"
    # The container is as it was before the first script: files written, the script's changes gone.
    assert await read_inside(inside, 143, CONF) == "version=1"
    assert await read_inside(inside, 143, "/etc/half-done") is None
    assert not sim_node.state.guests[143].snapshots
    assert any(e.type == "rolled_back" for e in await events(worker_ctx, container_id))


@pytest.mark.usefixtures("registered_node")
async def test_sync_on_start_runs_a_sync_after_a_start(
    worker_ctx: WorkerContext, user_client: UserClient, sim_node: RunningNode, inside: PctExecRunner, stub_broker: Any
) -> None:
    http = user_client.http
    template = await make(user_client, name="boot-app", conf="version=1\n", script="echo one", packages=[])
    container_id = await created(worker_ctx, user_client, template["id"], 144)
    response = await http.patch(f"/api/containers/{container_id}/settings", json={"sync_on_start": True})
    assert response.status_code == 200, response.text
    assert response.json() == {"sync_on_start": True}
    await change(user_client, template["id"], name="boot-app", conf="version=2\n", script="echo two", packages=[])

    await stop_container(worker_ctx, await request_action(user_client, container_id, "stop"))
    await start_container(worker_ctx, await request_action(user_client, container_id, "start"))
    ops = (await http.get(f"/api/containers/{container_id}/operations", params={"kind": "sync"})).json()["items"]
    assert len(ops) == 1
    assert ops[0]["status"] == "queued"
    await sync_container(worker_ctx, ops[0]["id"])
    op = await operation(worker_ctx, ops[0]["id"])
    assert op.status == "succeeded", op.error
    assert op.params["reason"] == "on_start"
    assert result(op)["scripts_run"] == []
    assert await read_inside(inside, 144, CONF) == "version=2"
    # Scripts were not run: drift still shows the changed script, nothing else.
    differs = not_same(await drift(user_client, container_id, revision="latest"))
    assert set(differs) == {("script", "10-setup")}


@pytest.mark.usefixtures("registered_node")
async def test_sync_requests_are_checked(worker_ctx: WorkerContext, user_client: UserClient) -> None:
    http = user_client.http
    template = await make(user_client, name="checked", conf="v\n", script="true", packages=[])
    container_id = await created(worker_ctx, user_client, template["id"], 145)
    problem = assert_problem(
        await http.post(f"/api/containers/{container_id}/sync", json={"scripts": ["99-nope"]}), 422, "validation_failed"
    )
    assert problem["errors"][0]["field"] == "scripts[0]"
    assert_problem(await http.post(f"/api/containers/{container_id}/sync", json={"revision": 9}), 404, "not_found")
    assert_problem(await http.post(f"/api/containers/{container_id}/sync", json={"steps": ["nope"]}), 422)
    assert_problem(await http.get(f"/api/containers/{container_id}/drift", params={"revision": "x"}), 422)
    await stop_container(worker_ctx, await request_action(user_client, container_id, "stop"))
    assert_problem(await http.post(f"/api/containers/{container_id}/sync"), 409, "invalid_state")
    assert_problem(await http.get(f"/api/containers/{container_id}/drift"), 409, "invalid_state")


@pytest.mark.usefixtures("registered_node")
async def test_a_guest_without_our_marker_is_never_touched(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    make_user_client: Any,
    sim_node: RunningNode,
    inside: PctExecRunner,
) -> None:
    http = user_client.http
    template = await make(user_client, name="owned", conf="version=1\n", script="echo one", packages=[])
    container_id = await created(worker_ctx, user_client, template["id"], 146)
    await change(user_client, template["id"], name="owned", conf="version=2\n", script="echo two", packages=[])

    # Another user sees none of it.
    other: UserClient = await make_user_client("someone@pve")
    for response in (
        await other.http.get(f"/api/containers/{container_id}/drift"),
        await other.http.get(f"/api/containers/{container_id}/snapshots"),
        await other.http.post(f"/api/containers/{container_id}/sync"),
        await other.http.post(f"/api/containers/{container_id}/snapshots", json={"name": "x1"}),
    ):
        assert_problem(response, 404, "not_found")

    # Someone replaced the guest's marker on the node: no pct exec, no snapshot, no sync.
    guest = sim_node.state.guests[146]
    guest.config["tags"] = "other"
    guest.config.pop("description", None)
    assert_problem(await http.get(f"/api/containers/{container_id}/drift"), 409, "ownership_mismatch")
    op = await sync(worker_ctx, user_client, container_id)
    assert (op.status, error(op)["code"]) == ("failed", "ownership_mismatch")
    assert not guest.snapshots
    assert await read_inside(inside, 146, CONF) == "version=1"
    response = await http.post(f"/api/containers/{container_id}/snapshots", json={"name": "x1"})
    await create_snapshot(worker_ctx, response.json()["id"])
    op = await operation(worker_ctx, response.json()["id"])
    assert (op.status, error(op)["code"]) == ("failed", "ownership_mismatch")
    assert not guest.snapshots


@pytest.mark.usefixtures("registered_node")
async def test_a_referenced_revision_outlives_its_template(worker_ctx: WorkerContext, user_client: UserClient) -> None:
    http = user_client.http
    template = await make(user_client, name="short-lived", conf="version=1\n", script="echo one", packages=[])
    container_id = await created(worker_ctx, user_client, template["id"], 147)
    assert (await http.delete(f"/api/templates/{template['id']}")).status_code == 204
    detail = (await http.get(f"/api/containers/{container_id}")).json()
    assert detail["revisions"]["created_from"] == 1
    assert detail["revisions"]["latest"] is None
    # What it was made from is still known: drift against it works; there is nothing newer to sync to.
    report = await drift(user_client, container_id)
    assert report["in_sync"], not_same(report)
    assert report["revision"] == 1
    assert_problem(await http.post(f"/api/containers/{container_id}/sync"), 409, "no_template")
    assert_problem(await http.get(f"/api/containers/{container_id}/drift", params={"revision": "latest"}), 409)
