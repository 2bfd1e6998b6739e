"""Secrets are bound to the endpoint they were given for: moving a node's API or SSH endpoint (or weakening its TLS
settings) needs its secrets again in the same request, and nothing is sent anywhere before that."""

from pathlib import Path
from typing import Any

import asyncssh
import pytest

from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig
from tests.fixtures.api import UserClient, assert_problem

OTHER_HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    # A second node ("pve2") plays the other endpoint a node could be moved to.
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve"), SimNodeConfig(name="pve2")],
        task_duration=0.02,
    )


def secret_fields(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}


@pytest.mark.parametrize(
    "change",
    [
        {"host": "localhost"},
        {"tls_verify": False, "tls_fingerprint": None},
        {"tls_fingerprint": ":".join(["AB"] * 32)},
    ],
)
async def test_a_new_api_endpoint_without_the_token_secret_is_refused_before_any_request(
    user_client: UserClient, registered_node: dict[str, Any], simulator: Simulator, change: dict[str, Any]
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    before = {node.name: len(node.requests) for node in simulator.nodes}
    response = await user_client.http.patch(path, json=change)
    problem = assert_problem(response, 422, "secrets_required")
    assert "token_secret" in secret_fields(problem)
    assert {node.name: len(node.requests) for node in simulator.nodes} == before
    assert (await user_client.http.get(path)).json() == registered_node


async def test_the_stored_token_secret_never_reaches_another_node(
    user_client: UserClient, registered_node: dict[str, Any], simulator: Simulator
) -> None:
    other = simulator.node("pve2")
    path = f"/api/nodes/{registered_node['id']}"
    moved = {"port": other.api_port, "tls_fingerprint": other.fingerprint, "pve_node": "pve2"}
    problem = assert_problem(await user_client.http.patch(path, json=moved), 422, "secrets_required")
    assert secret_fields(problem) == {"token_secret"}
    assert other.requests == []
    # With the secret sent again (the same token is valid there), the move is tested against the new node.
    ok = await user_client.http.patch(path, json={**moved, "token_secret": "demo-token-secret"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["port"] == other.api_port
    assert other.requests


async def test_a_new_ssh_endpoint_needs_the_ssh_secrets_and_only_then_drops_the_pin(
    user_client: UserClient, registered_node: dict[str, Any], node_payload: dict[str, Any]
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    pinned = await user_client.http.patch(path, json={"ssh_host_key": OTHER_HOST_KEY})
    assert pinned.json()["ssh_host_key"] == OTHER_HOST_KEY

    for change in ({"ssh_port": 2022}, {"ssh_host": "localhost"}):
        problem = assert_problem(await user_client.http.patch(path, json=change), 422, "secrets_required")
        assert secret_fields(problem) == {"ssh_password"}
        assert (await user_client.http.get(path)).json()["ssh_host_key"] == OTHER_HOST_KEY

    # Moving `host` moves SSH too when no ssh_host is set: both secrets are asked for at once.
    problem = assert_problem(await user_client.http.patch(path, json={"host": "localhost"}), 422, "secrets_required")
    assert secret_fields(problem) == {"token_secret", "ssh_password"}

    moved = await user_client.http.patch(path, json={"ssh_port": 2022, "ssh_password": node_payload["ssh_password"]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["ssh_port"] == 2022
    assert moved.json()["ssh_host_key"] is None


async def test_changes_that_keep_the_endpoint_need_no_secrets(
    user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    same = {"host": registered_node["host"], "port": registered_node["port"], "ssh_port": registered_node["ssh_port"]}
    response = await user_client.http.patch(path, json={**same, "name": "renamed", "ssh_username": "root"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "renamed"
