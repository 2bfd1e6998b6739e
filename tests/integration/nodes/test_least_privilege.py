"""A least-privilege API token (privilege separation, the minimal role on the README's paths): enough for everything
infrahaus does, and one privilege short reported by name and path at registration, connection test and preflight."""

from typing import Any

import pytest

from infrahaus_domain.nodes.privileges import ROLE_PATHS, ROLE_PRIVILEGES
from infrahaus_pvesim import RunningNode, SimAcl, SimulatorConfig
from infrahaus_pvesim.config import (
    DEMO_LEAST_TOKEN_ID,
    DEMO_LEAST_TOKEN_SECRET,
    DEMO_ROLE,
    DEMO_ROLE_PATHS,
    DEMO_ROLE_PRIVILEGES,
)
from tests.fixtures.api import UserClient, assert_problem
from tests.fixtures.nodes import node_body
from tests.integration.containers.conftest import create_body


@pytest.fixture
def least_payload(sim_node: RunningNode, simulator_config: SimulatorConfig) -> dict[str, Any]:
    return node_body(sim_node, simulator_config, token_id=DEMO_LEAST_TOKEN_ID, token_secret=DEMO_LEAST_TOKEN_SECRET)


def without(config: SimulatorConfig, privilege: str) -> None:
    """Take one privilege out of the minimal role (for the token and its user alike)."""
    config.roles[DEMO_ROLE] = DEMO_ROLE_PRIVILEGES - {privilege}


def test_the_demo_role_is_exactly_what_infrahaus_needs() -> None:
    # The simulator's demo role, the README's role and the checks all mean the same set on the same paths.
    assert set(DEMO_ROLE_PRIVILEGES) == set(ROLE_PRIVILEGES)
    assert DEMO_ROLE_PATHS == ROLE_PATHS


async def test_the_minimal_role_registers(user_client: UserClient, least_payload: dict[str, Any]) -> None:
    response = await user_client.http.post("/api/nodes", json=least_payload)
    assert response.status_code == 201, response.text
    tested = (await user_client.http.post(f"/api/nodes/{response.json()['id']}/test")).json()
    assert tested["api"]["ok"] is True, tested


@pytest.mark.parametrize(
    ("privilege", "path"),
    [
        ("VM.Config.Network", "/vms/100"),
        ("Sys.Audit", "/nodes/pve"),
        ("SDN.Use", "/sdn/zones/localnetwork"),
        ("Datastore.AllocateSpace", "/storage"),
    ],
)
async def test_registration_names_the_one_missing_privilege(
    user_client: UserClient,
    least_payload: dict[str, Any],
    simulator_config: SimulatorConfig,
    privilege: str,
    path: str,
) -> None:
    without(simulator_config, privilege)
    response = await user_client.http.post("/api/nodes", json=least_payload)
    body = assert_problem(response, 502, "missing_privileges")
    assert [(m["path"], m["privileges"]) for m in body["missing_privileges"]] == [(path, [privilege])]
    assert f"{privilege} on {path}" in body["detail"]
    assert (await user_client.http.get("/api/nodes")).json()["items"] == []


async def test_the_connection_test_names_a_privilege_taken_away_later(
    user_client: UserClient, least_payload: dict[str, Any], simulator_config: SimulatorConfig
) -> None:
    node = (await user_client.http.post("/api/nodes", json=least_payload)).json()
    without(simulator_config, "VM.PowerMgmt")
    tested = (await user_client.http.post(f"/api/nodes/{node['id']}/test")).json()
    assert tested["api"]["ok"] is False
    assert tested["api"]["code"] == "missing_privileges"
    assert [(m["path"], m["privileges"]) for m in tested["api"]["missing_privileges"]] == [
        ("/vms/100", ["VM.PowerMgmt"])
    ]
    assert tested["ssh"]["ok"] is True


async def test_preflight_names_missing_privileges_on_the_paths_the_creation_uses(
    user_client: UserClient, least_payload: dict[str, Any], simulator_config: SimulatorConfig
) -> None:
    node = (await user_client.http.post("/api/nodes", json=least_payload)).json()
    assert node["id"]
    # The token may use vmbr0 only: a creation on another bridge lacks SDN.Use there.
    simulator_config.acls = [acl for acl in simulator_config.acls if acl.path != "/sdn/zones/localnetwork"]
    simulator_config.acls.append(
        SimAcl(
            "/sdn/zones/localnetwork/vmbr0",
            (DEMO_ROLE,),
            users=("infrahaus@pve",),
            tokens=(DEMO_LEAST_TOKEN_ID,),
        )
    )
    without(simulator_config, "VM.Config.Memory")
    report = (
        await user_client.http.post("/api/containers/preflight", json=create_body(vmid=820, bridge="vmbr1"))
    ).json()
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is False
    privileges = checks["privileges"]
    assert privileges["code"] == "missing_privileges"
    assert [(m["path"], m["privileges"]) for m in privileges["missing_privileges"]] == [
        ("/vms/820", ["VM.Config.Memory"]),
        ("/sdn/zones/localnetwork/vmbr1", ["SDN.Use"]),
    ]
