"""POST /api/containers/preflight: every check against the simulator, nothing created."""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.models.containers import Container
from infrahaus_pvesim import RunningNode
from tests.fixtures.api import UserClient, assert_problem
from tests.integration.containers.conftest import create_body, put_guest


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


async def test_a_good_request_passes_every_check(
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
) -> None:
    response = await user_client.http.post(
        "/api/containers/preflight", json=create_body(vmid=800, features={"keyctl": True})
    )
    assert response.status_code == 200, response.text
    report = response.json()
    checks = by_name(report)
    assert report["ok"] is True, report
    assert set(checks) == {
        "request",
        "vmid",
        "storage",
        "os_template",
        "bridge",
        "privileges",
        "ssh",
        "root_options",
    }
    assert "keyctl" in checks["root_options"]["detail"]
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Container)) == 0


async def test_every_problem_is_reported_at_once(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    put_guest(sim_node, 810)
    await user_client.http.post(f"/api/nodes/{registered_node['id']}/vmids/refresh")
    body = create_body(vmid=810, storage="local", bridge="vmbr9", os_template="local:vztmpl/nope.tar.zst", disk_gb=4)
    report = (await user_client.http.post("/api/containers/preflight", json=body)).json()
    checks = by_name(report)
    assert report["ok"] is False
    assert {n for n, c in checks.items() if not c["ok"]} == {"vmid", "storage", "bridge", "os_template"}
    assert "rootdir" in checks["storage"]["detail"]


async def test_an_invalid_request_is_reported_as_one_failed_check(
    user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    body = create_body(network={"mode": "static"})
    report = (await user_client.http.post("/api/containers/preflight", json=body)).json()
    assert report["ok"] is False
    assert report["checks"][0]["name"] == "request"
    assert "network.ip_cidr" in report["checks"][0]["detail"]


async def test_preflight_without_a_node_is_409(user_client: UserClient) -> None:
    assert_problem(
        await user_client.http.post("/api/containers/preflight", json=create_body()), 409, "no_node_configured"
    )


async def test_an_unreachable_node_fails_the_checks_with_the_reason(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    sim_node.faults.unreachable = True
    report = (await user_client.http.post("/api/containers/preflight", json=create_body(vmid=820))).json()
    checks = by_name(report)
    assert report["ok"] is False
    assert checks["request"]["ok"] is True
    failed = {n for n, c in checks.items() if not c["ok"]}
    assert {"vmid", "storage", "os_template", "bridge", "privileges", "ssh"} <= failed
    assert "Not checked" in checks["bridge"]["detail"]
