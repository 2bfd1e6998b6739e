"""GET /api/containers/{id}: live item, parsed Proxmox config, creation request; bad nodes; ownership."""

import uuid
from typing import Any

from tests.fixtures.api import UserClient, assert_not_found_for_other_user, assert_problem
from tests.integration.containers_read.conftest import MIB, AddContainer, Fleet, put_guest

DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


async def detail(client: UserClient, container_id: uuid.UUID | str) -> dict[str, Any]:
    response = await client.http.get(f"/api/containers/{container_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_detail_has_the_parsed_config_and_the_creation_request(user_client: UserClient, fleet: Fleet) -> None:
    response = await user_client.http.post(
        "/api/containers",
        json={
            "hostname": "web-1",
            "os_template": DEBIAN,
            "node_id": str(fleet.node_ids["pve2"]),
            "cores": 2,
            "memory_mb": 1024,
            "tags": ["web", "prod"],
        },
    )
    assert response.status_code == 202, response.text
    created = response.json()
    container_id, vmid = created["container"]["id"], created["container"]["vmid"]
    put_guest(fleet.node("pve2"), vmid, "running")

    body = await detail(user_client, container_id)
    assert (body["id"], body["vmid"], body["hostname"], body["lifecycle"]) == (container_id, vmid, "web-1", "creating")
    assert body["node"] == {"id": str(fleet.node_ids["pve2"]), "name": "pve2"}
    assert body["status"] == "running"
    assert body["resources"]["memory_max"] == 1024 * MIB
    assert body["active_operation"]["id"] == created["operation"]["id"]
    assert body["allowed_actions"] == ["delete"]
    assert body["config_error"] is None
    config = body["config"]
    assert (config["ostype"], config["arch"], config["cores"], config["memory_mb"], config["swap_mb"]) == (
        "debian",
        "amd64",
        2,
        1024,
        256,
    )
    assert (config["onboot"], config["tags"]) == (True, ["web", "prod"])
    assert config["rootfs"] == {
        "volume": f"local-lvm:vm-{vmid}-disk-0",
        "storage": "local-lvm",
        "size": "8G",
        "size_bytes": 8 * 1024 * MIB,
    }
    [net] = config["networks"]
    assert (net["key"], net["name"], net["bridge"], net["gateway"]) == ("net0", "eth0", "vmbr0", "192.0.2.1")
    assert net["ip"] == f"192.0.2.{vmid % 250}/24"
    assert net["hwaddr"].startswith("BC:24:11:")
    assert config["features"] == {"nesting": True, "keyctl": True, "fuse": False, "mknod": False, "mount": []}
    request = body["request"]
    assert (request["hostname"], request["os_template"], request["cores"], request["memory_mb"]) == (
        "web-1",
        DEBIAN,
        2,
        1024,
    )
    assert request["tags"] == ["web", "prod"]
    assert request["vmid"] == vmid


async def test_unreachable_node_gives_a_null_config_with_the_reason(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    container = await add_container("pve3", 400)
    fleet.node("pve3").faults.unreachable = True
    body = await detail(user_client, container.id)
    assert (body["status"], body["resources"], body["config"]) == ("unknown", None, None)
    assert body["config_error"]["code"] == "node_unreachable"
    assert body["request"] is None


async def test_container_gone_from_its_node_is_reported_not_a_500(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    container = await add_container("pve1", 200)
    del fleet.node("pve1").state.guests[200]
    body = await detail(user_client, container.id)
    assert (body["status"], body["config"], body["allowed_actions"]) == ("unknown", None, ["delete"])
    assert body["config_error"]["code"] == "missing_on_node"


async def test_other_users_and_missing_containers_are_404(
    user_client: UserClient, other_user_client: UserClient, add_container: AddContainer
) -> None:
    container = await add_container("pve1", 200)
    for path in ("", "/services", "/services/nginx/credentials", "/services/nginx/logs"):
        await assert_not_found_for_other_user(other_user_client.http, "GET", f"/api/containers/{container.id}{path}")
        response = await user_client.http.get(f"/api/containers/{uuid.uuid4()}{path}")
        assert_problem(response, 404, "not_found")
    await assert_not_found_for_other_user(
        other_user_client.http, "POST", f"/api/containers/{container.id}/services/refresh"
    )
