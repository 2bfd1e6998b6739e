"""`/api/nodes` against PostgreSQL, Redis and the Proxmox simulator over real sockets."""

import logging
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from litestar import Litestar

from infrahaus_api.resources import AppResources
from infrahaus_domain.models.containers import Container
from infrahaus_pvesim import RunningNode, SimNodeConfig, SimToken, SimulatorConfig
from infrahaus_pvesim.config import DEMO_TOKEN_ID
from tests.fixtures.api import UserClient, assert_no_secrets, assert_not_found_for_other_user, assert_problem
from tests.fixtures.nodes import node_body

TOKEN_SECRET = f"tok-{uuid.uuid4().hex}"
SSH_PASSWORD = f"sshpw-{uuid.uuid4().hex}"
LIMITED_TOKEN = "root@pam!limited"
LIMITED_SECRET = f"limited-{uuid.uuid4().hex}"
PRIVATE_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
# The line holding the private scalar: any fragment of it in a response or log is a leak.
KEY_MATERIAL = PRIVATE_KEY.splitlines()[4]
OTHER_HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
SECRETS = (TOKEN_SECRET, SSH_PASSWORD, LIMITED_SECRET, KEY_MATERIAL)


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    """Distinctive secrets (so a leak is detectable) and a privilege-separated token without any ACL."""
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve", guests=4, ssh_users={"root": SSH_PASSWORD})],
        tokens={
            DEMO_TOKEN_ID: SimToken(secret=TOKEN_SECRET),
            LIMITED_TOKEN: SimToken(secret=LIMITED_SECRET, privsep=True),
        },
        task_duration=0.02,
    )


async def test_create_get_list_update_delete(user_client: UserClient, node_payload: dict[str, Any]) -> None:
    http = user_client.http
    created = await http.post("/api/nodes", json=node_payload)
    assert created.status_code == 201, created.text
    node = created.json()
    assert created.headers["location"] == f"/api/nodes/{node['id']}"
    assert node["name"] == "pve"
    assert node["pve_node"] == "pve"
    assert node["port"] == node_payload["port"]
    assert node["is_default"] is True
    assert node["ssh_host"] == "127.0.0.1"
    assert node["ssh_username"] == "root"
    assert node["ssh_host_key"] is None
    assert (node["has_token_secret"], node["has_ssh_password"], node["has_ssh_private_key"]) == (True, True, False)
    assert node["container_count"] == 0
    assert not {"token_secret", "ssh_password", "ssh_private_key"} & node.keys()

    fetched = await http.get(f"/api/nodes/{node['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == node

    second = await http.post("/api/nodes", json={**node_payload, "name": "second"})
    assert second.status_code == 201
    assert second.json()["is_default"] is False
    listed = await http.get("/api/nodes")
    assert listed.status_code == 200
    assert [n["name"] for n in listed.json()["items"]] == ["pve", "second"]
    assert listed.json()["next_cursor"] is None

    # Another SSH port is another endpoint: the SSH password goes with it, or the change is refused.
    renamed = await http.patch(
        f"/api/nodes/{node['id']}",
        json={"name": "main", "ssh_port": 2200, "ssh_password": node_payload["ssh_password"]},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "main"
    assert renamed.json()["ssh_port"] == 2200
    assert renamed.json()["has_ssh_password"] is True

    deleted = await http.delete(f"/api/nodes/{node['id']}")
    assert deleted.status_code == 204
    assert_problem(await http.get(f"/api/nodes/{node['id']}"), 404, "not_found")


async def test_pagination_with_cursor(user_client: UserClient, node_payload: dict[str, Any]) -> None:
    for index in range(3):
        response = await user_client.http.post("/api/nodes", json={**node_payload, "name": f"n{index}"})
        assert response.status_code == 201
    first = (await user_client.http.get("/api/nodes", params={"limit": 2})).json()
    assert [n["name"] for n in first["items"]] == ["n0", "n1"]
    assert first["next_cursor"]
    rest = (await user_client.http.get("/api/nodes", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [n["name"] for n in rest["items"]] == ["n2"]
    assert rest["next_cursor"] is None
    assert_problem(await user_client.http.get("/api/nodes", params={"limit": 501}), 422, "validation_failed")
    assert_problem(await user_client.http.get("/api/nodes", params={"cursor": "!!"}), 422, "validation_failed")


async def test_pve_node_is_detected_and_names_are_unique_per_user(
    user_client: UserClient, other_user_client: UserClient, node_payload: dict[str, Any]
) -> None:
    created = await user_client.http.post("/api/nodes", json={**node_payload, "pve_node": None})
    assert created.status_code == 201
    assert created.json()["pve_node"] == "pve"
    assert_problem(await user_client.http.post("/api/nodes", json=node_payload), 409, "node_name_taken")
    # Another user's namespace is separate, and their first node is their default.
    other = await other_user_client.http.post("/api/nodes", json=node_payload)
    assert other.status_code == 201
    assert other.json()["is_default"] is True


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"port": 1}, "node_unreachable"),
        ({"tls_fingerprint": ":".join(["AB"] * 32)}, "tls_mismatch"),
        ({"tls_fingerprint": None}, "tls_error"),
        ({"token_secret": "wrong-secret"}, "node_auth_failed"),
        ({"token_id": LIMITED_TOKEN, "token_secret": LIMITED_SECRET}, "missing_privileges"),
    ],
)
async def test_connection_test_failures_have_distinct_codes_and_save_nothing(
    user_client: UserClient, node_payload: dict[str, Any], overrides: dict[str, Any], code: str
) -> None:
    response = await user_client.http.post("/api/nodes", json={**node_payload, **overrides})
    body = assert_problem(response, 502, code)
    assert_no_secrets(SECRETS, response.text)
    assert "wrong-secret" not in body["detail"]
    assert (await user_client.http.get("/api/nodes")).json()["items"] == []


async def test_token_privileges_are_checked(
    user_client: UserClient, node_payload: dict[str, Any], simulator_config: SimulatorConfig
) -> None:
    # Auditing rights alone let the connection test read the node, but not create containers.
    simulator_config.tokens[LIMITED_TOKEN].privileges = {"/": {"Sys.Audit", "VM.Audit"}}
    response = await user_client.http.post(
        "/api/nodes", json={**node_payload, "token_id": LIMITED_TOKEN, "token_secret": LIMITED_SECRET}
    )
    body = assert_problem(response, 502, "missing_privileges")
    assert "VM.Allocate" in body["detail"]
    # Every privilege named with its path; what the auditor role has is not listed.
    missing = [(m["path"], m["privileges"], m["any_of"]) for m in body["missing_privileges"]]
    # The VM privileges are read where a new container would go: the next free VMID (4 guests exist).
    vm_path, vm_privileges, _ = missing[0]
    assert vm_path == "/vms/104"
    assert "VM.Allocate" in vm_privileges
    assert "VM.Audit" not in vm_privileges
    assert missing[1:] == [
        ("/storage", ["Datastore.AllocateSpace"], False),
        ("/storage", ["Datastore.AllocateSpace", "Datastore.Audit"], True),
        ("/sdn/zones/localnetwork", ["SDN.Use"], False),
    ]


async def test_invalid_input_is_422(user_client: UserClient, node_payload: dict[str, Any]) -> None:
    for bad in (
        {"token_id": "no-realm"},
        {"host": "https://x"},
        {"tls_fingerprint": "zz"},
        {"ssh_username": "root; rm -rf /"},
        {"port": 70000},
        {"unknown": 1},
    ):
        response = await user_client.http.post("/api/nodes", json={**node_payload, **bad})
        assert_problem(response, 422, "validation_failed")


async def test_unreadable_ssh_keys_are_422_without_echoing_them(
    user_client: UserClient, node_payload: dict[str, Any]
) -> None:
    garbage_key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END OPENSSH PRIVATE KEY-----\n"
    response = await user_client.http.post("/api/nodes", json={**node_payload, "ssh_private_key": garbage_key})
    body = assert_problem(response, 422, "validation_failed")
    assert [e["field"] for e in body["errors"]] == ["ssh_private_key"]
    assert_no_secrets([KEY_MATERIAL], response.text)
    bad_host_key = await user_client.http.post(
        "/api/nodes", json={**node_payload, "ssh_host_key": "ssh-ed25519 AAAAnotakey"}
    )
    assert assert_problem(bad_host_key, 422, "validation_failed")["errors"][0]["field"] == "ssh_host_key"


async def test_default_promotion_and_switching(user_client: UserClient, node_payload: dict[str, Any]) -> None:
    http = user_client.http
    ids = []
    for name in ("a", "b", "c"):
        response = await http.post("/api/nodes", json={**node_payload, "name": name})
        ids.append(response.json()["id"])

    async def defaults() -> list[str]:
        return [n["name"] for n in (await http.get("/api/nodes")).json()["items"] if n["is_default"]]

    assert await defaults() == ["a"]
    switched = await http.post(f"/api/nodes/{ids[2]}/default")
    assert switched.status_code == 200
    assert switched.json()["is_default"] is True
    assert await defaults() == ["c"]
    assert (await http.delete(f"/api/nodes/{ids[2]}")).status_code == 204
    assert await defaults() == ["a"]
    assert (await http.delete(f"/api/nodes/{ids[0]}")).status_code == 204
    assert await defaults() == ["b"]


async def test_delete_refused_while_containers_exist(
    app: Litestar, user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    resources: AppResources = app.state.resources
    async with resources.sessionmaker() as session:
        session.add(
            Container(user_id=user_client.user_id, node_id=uuid.UUID(registered_node["id"]), vmid=321, hostname="web")
        )
        await session.commit()
    node_path = f"/api/nodes/{registered_node['id']}"
    assert (await user_client.http.get(node_path)).json()["container_count"] == 1
    assert_problem(await user_client.http.delete(node_path), 409, "node_has_containers")
    assert (await user_client.http.get(node_path)).status_code == 200


async def test_probe_reports_the_certificate(user_client: UserClient, sim_node: RunningNode) -> None:
    response = await user_client.http.post("/api/nodes/probe", json={"host": "127.0.0.1", "port": sim_node.api_port})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fingerprint_sha256"] == sim_node.fingerprint
    assert body["subject"]
    assert body["issuer"]
    assert body["not_after"]
    closed = await user_client.http.post("/api/nodes/probe", json={"host": "127.0.0.1", "port": 1})
    assert_problem(closed, 502, "node_unreachable")


async def test_test_endpoint_pins_ssh_host_key_on_first_use(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    result = await user_client.http.post(f"{path}/test")
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["api"]["ok"] is True
    assert body["api"]["version"]
    assert body["api"]["latency_ms"] >= 0
    assert body["ssh"]["ok"] is True
    assert body["ssh"]["latency_ms"] >= 0
    assert "error" not in body["api"]
    assert "error" not in body["ssh"]
    assert (await user_client.http.get(path)).json()["ssh_host_key"] == sim_node.ssh_host_key

    # A different pinned key is refused, and the pin is not replaced.
    assert (await user_client.http.patch(path, json={"ssh_host_key": OTHER_HOST_KEY})).status_code == 200
    refused = (await user_client.http.post(f"{path}/test")).json()
    assert refused["api"]["ok"] is True
    assert refused["ssh"]["ok"] is False
    assert refused["ssh"]["code"] == "ssh_host_key_mismatch"
    assert (await user_client.http.get(path)).json()["ssh_host_key"] == OTHER_HOST_KEY


async def test_test_endpoint_reports_failures_without_raising(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    assert (await user_client.http.patch(path, json={"ssh_password": "wrong"})).status_code == 200
    wrong = (await user_client.http.post(f"{path}/test")).json()
    assert wrong["ssh"]["ok"] is False
    assert wrong["ssh"]["code"] == "ssh_auth_failed"

    sim_node.faults.unreachable = True
    down = await user_client.http.post(f"{path}/test")
    assert down.status_code == 200
    assert down.json()["api"] == {"ok": False, "error": down.json()["api"]["error"], "code": "node_unreachable"}
    assert down.json()["ssh"]["ok"] is False


async def test_patch_secrets_keep_clear_and_retest(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    http = user_client.http
    with_key = (await http.patch(path, json={"ssh_private_key": PRIVATE_KEY})).json()
    assert (with_key["has_ssh_password"], with_key["has_ssh_private_key"]) == (True, True)
    cleared = (await http.patch(path, json={"ssh_password": None})).json()
    assert (cleared["has_ssh_password"], cleared["has_ssh_private_key"]) == (False, True)

    # Changing only non-endpoint fields asks nothing of the node.
    before = len(sim_node.requests)
    assert (await http.patch(path, json={"name": "renamed", "ssh_username": "admin"})).status_code == 200
    assert len(sim_node.requests) == before

    # A changed token is re-tested; a failing one is refused and nothing changes.
    refused = await http.patch(path, json={"token_secret": "not-the-secret"})
    assert_problem(refused, 502, "node_auth_failed")
    assert len(sim_node.requests) > before
    test = (await http.post(f"{path}/test")).json()
    assert test["api"]["ok"] is True
    repinned = await http.patch(path, json={"tls_fingerprint": ":".join(["CD"] * 32), "token_secret": TOKEN_SECRET})
    assert_problem(repinned, 502, "tls_mismatch")
    assert (await http.get(path)).json()["tls_fingerprint"] == sim_node.fingerprint


async def test_read_through_helpers(user_client: UserClient, registered_node: dict[str, Any]) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    status = await user_client.http.get(f"{path}/status")
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["pve_version"]
    assert body["uptime"] >= 0
    assert 0 <= body["cpu"] <= 1
    assert body["memory"]["total"] > 0
    assert body["disk"]["total"] > 0

    storages = (await user_client.http.get(f"{path}/storages")).json()
    assert {s["storage"] for s in storages} == {"local", "local-lvm"}
    rootdir = (await user_client.http.get(f"{path}/storages", params={"content": "rootdir"})).json()
    assert [s["storage"] for s in rootdir] == ["local-lvm"]
    assert "rootdir" in rootdir[0]["content"]
    bad = await user_client.http.get(f"{path}/storages", params={"content": "nonsense"})
    assert_problem(bad, 422, "validation_failed")

    templates = (await user_client.http.get(f"{path}/os-templates")).json()
    volids = [t["volid"] for t in templates]
    assert "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst" in volids
    debian = next(t for t in templates if t["volid"].startswith("local:vztmpl/debian"))
    assert debian["name"] == "debian-12-standard_12.7-1_amd64.tar.zst"
    assert debian["storage"] == "local"
    assert debian["size"] > 0

    bridges = (await user_client.http.get(f"{path}/bridges")).json()
    assert bridges == [{"iface": "vmbr0", "cidr": "192.168.100.2/24", "active": True}]


async def test_read_through_maps_upstream_errors(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    sim_node.faults.fail_http(401, path_contains="/status")
    assert_problem(await user_client.http.get(f"{path}/status"), 502, "node_auth_failed")
    # More failures than the client retries a GET.
    sim_node.faults.fail_http(500, times=5, path_contains="/network")
    assert_problem(await user_client.http.get(f"{path}/bridges"), 502, "node_error")
    sim_node.faults.unreachable = True
    assert_problem(await user_client.http.get(f"{path}/storages"), 502, "node_unreachable")


NODE_ROUTES = [
    ("GET", ""),
    ("PATCH", ""),
    ("DELETE", ""),
    ("POST", "/default"),
    ("POST", "/test"),
    ("GET", "/status"),
    ("GET", "/storages"),
    ("GET", "/os-templates"),
    ("GET", "/bridges"),
    ("GET", "/vmids"),
    ("GET", "/vmids/next"),
    ("GET", "/vmids/100"),
    ("POST", "/vmids/refresh"),
]


async def test_another_users_node_is_not_found_on_every_route(
    user_client: UserClient, other_user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    before = len(sim_node.requests)
    for method, suffix in NODE_ROUTES:
        body = {"name": "stolen"} if method == "PATCH" else None
        await assert_not_found_for_other_user(
            other_user_client.http, method, f"/api/nodes/{registered_node['id']}{suffix}", json=body
        )
    # Nothing reached the node on the other user's behalf, and the node is unchanged.
    assert len(sim_node.requests) == before
    assert (await user_client.http.get(f"/api/nodes/{registered_node['id']}")).json()["name"] == "pve"


async def test_secrets_never_leave_the_api(
    user_client: UserClient,
    node_payload: dict[str, Any],
    sim_node: RunningNode,
    simulator_config: SimulatorConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    http = user_client.http
    texts: list[str] = []
    created = await http.post("/api/nodes", json={**node_payload, "ssh_private_key": PRIVATE_KEY})
    node_id = created.json()["id"]
    texts.append(created.text)
    for response in (
        await http.get("/api/nodes"),
        await http.get(f"/api/nodes/{node_id}"),
        await http.post(f"/api/nodes/{node_id}/test"),
        await http.patch(f"/api/nodes/{node_id}", json={"token_secret": LIMITED_SECRET}),
        await http.patch(f"/api/nodes/{node_id}", json={"token_id": LIMITED_TOKEN, "token_secret": LIMITED_SECRET}),
        await http.post("/api/nodes", json={**node_payload, "name": "x", "token_secret": SSH_PASSWORD}),
        await http.post("/api/nodes", json={**node_body(sim_node, simulator_config, name="y"), "port": 1}),
        await http.get(f"/api/nodes/{node_id}/vmids"),
    ):
        texts.append(response.text)
        texts.append(str(response.headers))
    assert_no_secrets(SECRETS, *texts, caplog.text)
