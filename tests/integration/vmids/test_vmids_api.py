"""`/api/nodes/{id}/vmids` against PostgreSQL, Redis and the simulator: cache, reasons, next, refresh, range."""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

from infrahaus_api.resources import AppResources
from infrahaus_domain.models.nodes import Node
from infrahaus_pvesim import RunningNode, SimNodeConfig, SimulatorConfig
from infrahaus_pvesim.state import SimGuest
from tests.fixtures.api import UserClient, assert_problem

GUESTS = 8  # vmids 100..107; every fourth (103, 107) is a QEMU VM


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve", guests=GUESTS)],
        task_duration=0.02,
    )


def _resource_fetches(node: RunningNode) -> int:
    return sum(1 for r in node.requests if r.path.endswith("/cluster/resources"))


async def _with_service(app: Litestar, node_id: str, action: str, vmid: int = 0) -> None:
    """Reserve, release or invalidate through `VmidService`, as the container part does."""
    resources: AppResources = app.state.resources
    async with resources.sessionmaker() as session:
        service = resources.services(session).vmids
        node = await session.get_one(Node, uuid.UUID(node_id))
        if action == "reserve":
            await service.reserve(node, vmid)
        elif action == "release":
            await service.release(node.id, vmid)
        else:
            await service.invalidate(node.id)
        await session.commit()


async def test_taken_lists_lxc_and_qemu_guests(user_client: UserClient, registered_node: dict[str, Any]) -> None:
    response = await user_client.http.get(f"/api/nodes/{registered_node['id']}/vmids")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["taken"] == list(range(100, 100 + GUESTS))
    assert body["refreshed_at"].endswith(("Z", "+00:00"))


async def test_availability_reasons_served_from_cache(
    app: Litestar, user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    base = f"/api/nodes/{registered_node['id']}/vmids"
    await _with_service(app, registered_node["id"], "reserve", 500)
    first = await user_client.http.get(f"{base}/100")
    assert first.json() == {"vmid": 100, "available": False, "reason": "taken"}
    assert _resource_fetches(sim_node) == 1

    # Warm cache: no request reaches Proxmox for any further check.
    before = len(sim_node.requests)
    expectations = {
        103: {"vmid": 103, "available": False, "reason": "taken"},  # a QEMU VM shares the id space
        500: {"vmid": 500, "available": False, "reason": "reserved"},
        108: {"vmid": 108, "available": True},
        999_999_999: {"vmid": 999_999_999, "available": True},
    }
    for _ in range(5):
        for vmid, expected in expectations.items():
            response = await user_client.http.get(f"{base}/{vmid}")
            assert response.status_code == 200
            assert response.json() == expected
    assert len(sim_node.requests) == before

    await _with_service(app, registered_node["id"], "release", 500)
    assert (await user_client.http.get(f"{base}/500")).json() == {"vmid": 500, "available": True}


@pytest.mark.parametrize("vmid", [0, 99, 1_000_000_000])
async def test_out_of_range_vmid_is_422(user_client: UserClient, registered_node: dict[str, Any], vmid: int) -> None:
    response = await user_client.http.get(f"/api/nodes/{registered_node['id']}/vmids/{vmid}")
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"][0]["field"] == "vmid"


@pytest.mark.parametrize("vmid", ["abc", "12a", "-"])
async def test_a_vmid_that_is_not_a_number_is_422_not_404(
    user_client: UserClient, registered_node: dict[str, Any], vmid: str
) -> None:
    response = await user_client.http.get(f"/api/nodes/{registered_node['id']}/vmids/{vmid}")
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"][0]["field"] == "vmid"
    # The fixed routes beside it still answer.
    assert (await user_client.http.get(f"/api/nodes/{registered_node['id']}/vmids/next")).status_code == 200


async def test_refresh_and_invalidation_reload_from_proxmox(
    app: Litestar, user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    base = f"/api/nodes/{registered_node['id']}/vmids"
    assert (await user_client.http.get(f"{base}/300")).json()["available"] is True
    sim_node.state.guests[300] = SimGuest(vmid=300, type="qemu", config={"name": "late-vm"})
    # Still the cached view until someone refreshes.
    assert (await user_client.http.get(f"{base}/300")).json()["available"] is True

    refreshed = await user_client.http.post(f"{base}/refresh")
    assert refreshed.status_code == 200
    assert 300 in refreshed.json()["taken"]
    assert _resource_fetches(sim_node) == 2
    assert (await user_client.http.get(f"{base}/300")).json()["reason"] == "taken"

    del sim_node.state.guests[300]
    await _with_service(app, registered_node["id"], "invalidate")
    assert (await user_client.http.get(f"{base}/300")).json()["available"] is True
    assert _resource_fetches(sim_node) == 3


async def test_next_skips_reserved_and_cached_ids(
    app: Litestar, user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    base = f"/api/nodes/{registered_node['id']}/vmids"
    first = await user_client.http.get(f"{base}/next")
    assert first.status_code == 200, first.text
    assert first.json() == {"vmid": 100 + GUESTS}
    await _with_service(app, registered_node["id"], "reserve", 100 + GUESTS)
    await _with_service(app, registered_node["id"], "reserve", 101 + GUESTS)
    assert (await user_client.http.get(f"{base}/next")).json() == {"vmid": 102 + GUESTS}


async def test_upstream_failure_on_cold_cache_is_502(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    sim_node.faults.unreachable = True
    response = await user_client.http.get(f"/api/nodes/{registered_node['id']}/vmids/150")
    assert_problem(response, 502, "node_unreachable")


async def test_burst_on_a_cold_cache_asks_proxmox_once(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    base = f"/api/nodes/{registered_node['id']}/vmids"
    responses = await asyncio.gather(*(user_client.http.get(f"{base}/{100 + i}") for i in range(12)))
    assert [r.json()["available"] for r in responses] == [False] * GUESTS + [True] * (12 - GUESTS)
    assert _resource_fetches(sim_node) == 1


async def test_a_guest_whose_status_is_unknown_still_takes_its_vmid(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    # /cluster/resources lists a guest pvestatd has not reported yet with status "unknown" (pve-manager
    # API2/Cluster.pm resources): it exists all the same.
    sim_node.state.rrd = {}
    sim_node.state.guests[120] = SimGuest(vmid=120, type="lxc", config={"hostname": "fresh"})
    refreshed = await user_client.http.post(f"/api/nodes/{registered_node['id']}/vmids/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert 120 in refreshed.json()["taken"]
    check = await user_client.http.get(f"/api/nodes/{registered_node['id']}/vmids/120")
    assert check.json() == {"vmid": 120, "available": False, "reason": "taken"}
