"""Placement (`node_id: auto` / `placement`) across three simulated nodes with different memory, guests and bridges.

pve1: 16 GiB, no guests, bridges vmbr0 and vmbr1. pve2: 64 GiB, 6 guests, vmbr0 and vmbr1. pve3: 32 GiB, 2 guests,
vmbr0 only. Jobs go to the stub broker: an accepted creation stays pending, and placement counts it on its node.
"""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.models.containers import Container, Operation
from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig
from infrahaus_pvesim.state import SimStorage
from tests.fixtures.api import UserClient, assert_problem
from tests.fixtures.nodes import node_body
from tests.integration.containers.conftest import DEBIAN, create_body

GIB = 1024**3


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        task_duration=0.02,
        nodes=[
            SimNodeConfig(name="pve1", memory=16 * GIB, guests=0, extra_bridges=("vmbr1",)),
            SimNodeConfig(name="pve2", memory=64 * GIB, guests=6, extra_bridges=("vmbr1",)),
            SimNodeConfig(name="pve3", memory=32 * GIB, guests=2),
        ],
    )


@pytest.fixture
async def fleet(user_client: UserClient, simulator: Simulator, simulator_config: SimulatorConfig) -> dict[str, str]:
    """The three nodes registered for the user: name -> node id."""
    ids = {}
    for node in simulator.nodes:
        response = await user_client.http.post("/api/nodes", json=node_body(node, simulator_config))
        assert response.status_code == 201, response.text
        ids[node.name] = response.json()["id"]
    return ids


def by_node(placement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["node_name"]: c for c in placement["candidates"]}


async def create(client: UserClient, **body: Any) -> dict[str, Any]:
    response = await client.http.post("/api/containers", json=create_body(**body))
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_most_free_picks_the_node_with_the_most_available_memory(
    user_client: UserClient, fleet: dict[str, str], db: async_sessionmaker[AsyncSession]
) -> None:
    created = await create(user_client, hostname="db-1", node_id="auto")
    container, operation = created["container"], created["operation"]
    assert container["node"] == {"id": fleet["pve2"], "name": "pve2"}
    placement = operation["placement"]
    assert placement["strategy"] == "most_free"
    assert (placement["node_id"], placement["node_name"]) == (fleet["pve2"], "pve2")
    assert "most available memory" in placement["reason"]
    nodes = by_node(placement)
    assert {n: c["outcome"] for n, c in nodes.items()} == {"pve1": "eligible", "pve2": "picked", "pve3": "eligible"}
    memory = {n: c["figures"]["memory_available"] for n, c in nodes.items()}
    assert memory["pve2"] > memory["pve3"] > memory["pve1"] > 0
    assert {n: c["figures"]["memory_total"] for n, c in nodes.items()} == {
        "pve1": 16 * GIB,
        "pve2": 64 * GIB,
        "pve3": 32 * GIB,
    }
    assert {n: c["figures"]["guests"] for n, c in nodes.items()} == {"pve1": 0, "pve2": 6, "pve3": 2}
    assert all(c["figures"]["storage_avail"] > 8 * GIB for c in nodes.values())
    assert placement["storage"] == "local-lvm"
    assert placement["bridge"] == "vmbr0"

    # The operation keeps the decision (GET) and the container's events record it.
    read = (await user_client.http.get(f"/api/operations/{operation['id']}")).json()
    assert read["placement"] == placement
    events = (await user_client.http.get(f"/api/containers/{container['id']}/events")).json()["items"]
    placed = [e for e in events if e["type"] == "placed"]
    assert len(placed) == 1
    assert placed[0]["operation_id"] == operation["id"]
    assert placed[0]["message"].startswith("Placed on pve2: most available memory")
    assert placed[0]["metadata"] == placement
    async with db() as session:
        op = await session.get(Operation, operation["id"])
        assert op is not None
        assert op.params["placement"]["node_name"] == "pve2"


async def test_spread_picks_the_node_with_the_fewest_guests_counting_pending_creations(
    user_client: UserClient, fleet: dict[str, str]
) -> None:
    picked = []
    for i in range(3):
        created = await create(user_client, hostname=f"web-{i}", placement={"strategy": "spread"})
        picked.append(created["container"]["node"]["name"])
        placement = created["operation"]["placement"]
        assert placement["strategy"] == "spread"
        assert "fewest guests" in placement["reason"]
    # pve1 has none, then one pending creation (still fewer than pve3's two), then ties with pve3, which has more
    # memory available.
    assert picked == ["pve1", "pve1", "pve3"]
    guests = {n: c["figures"]["guests"] for n, c in by_node(placement).items()}
    assert guests == {"pve1": 2, "pve2": 6, "pve3": 2}


async def test_an_unreachable_node_and_one_without_the_bridge_are_skipped_and_preflight_explains_it(
    user_client: UserClient, fleet: dict[str, str], simulator: Simulator
) -> None:
    simulator.node("pve2").faults.unreachable = True
    body = create_body(hostname="edge-1", node_id="auto", placement={"require_bridge": "vmbr1"})

    response = await user_client.http.post("/api/containers/preflight", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is True, report
    placement = report["placement"]
    assert (placement["node_id"], placement["node_name"]) == (fleet["pve1"], "pve1")
    assert placement["bridge"] == "vmbr1"
    nodes = by_node(placement)
    assert nodes["pve1"]["outcome"] == "picked"
    assert nodes["pve1"]["reasons"] == []
    assert nodes["pve2"]["outcome"] == "skipped"
    assert len(nodes["pve2"]["reasons"]) == 1
    assert nodes["pve2"]["reasons"][0].startswith("The node could not be asked")
    assert nodes["pve2"]["figures"] == {
        "memory_available": None,
        "memory_total": None,
        "storage_avail": None,
        "guests": None,
    }
    assert nodes["pve3"]["outcome"] == "skipped"
    assert nodes["pve3"]["reasons"] == ["bridge: Bridge 'vmbr1' does not exist on the node."]
    # pve3 has more memory than pve1: only the bridge kept it out.
    assert nodes["pve3"]["figures"]["memory_available"] > nodes["pve1"]["figures"]["memory_available"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["placement"]["ok"] is True
    assert checks["placement"]["detail"].startswith("pve1: most available memory")
    assert checks["bridge"] == {"name": "bridge", "ok": True, "detail": "Bridge 'vmbr1' exists."}
    assert checks["vmid"]["ok"] is True

    created = await create(user_client, hostname="edge-1", node_id="auto", placement={"require_bridge": "vmbr1"})
    assert created["container"]["node"]["name"] == "pve1"
    assert created["operation"]["placement"]["candidates"] == placement["candidates"]


async def test_no_eligible_node_is_a_409_naming_every_node_and_reason(
    user_client: UserClient, fleet: dict[str, str], simulator: Simulator
) -> None:
    simulator.node("pve1").faults.unreachable = True
    body = create_body(node_id="auto", placement={"require_bridge": "vmbr9", "avoid_tags": ["db"]})
    problem = assert_problem(await user_client.http.post("/api/containers", json=body), 409, "no_eligible_node")
    nodes = by_node(problem["placement"])
    assert problem["placement"]["node_id"] is None
    assert {c["outcome"] for c in nodes.values()} == {"skipped"}
    assert nodes["pve1"]["reasons"][0].startswith("The node could not be asked")
    for name in ("pve2", "pve3"):
        assert nodes[name]["reasons"] == ["bridge: Bridge 'vmbr9' does not exist on the node."]
    assert problem["detail"].startswith("No node is eligible.")
    assert "pve3: bridge: Bridge 'vmbr9'" in problem["detail"]
    # Nothing was created.
    assert (await user_client.http.get("/api/containers")).json()["items"] == []

    report = (await user_client.http.post("/api/containers/preflight", json=body)).json()
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["placement"]
    assert report["placement"]["candidates"] == problem["placement"]["candidates"]


async def test_avoid_tags_and_memory_keep_a_node_out(
    user_client: UserClient, fleet: dict[str, str], simulator: Simulator
) -> None:
    # A guest tagged "db" on pve2 (the one with the most memory) keeps a second "db" away from it.
    guest = simulator.node("pve2").state.guests[100]
    guest.config["tags"] = "db;infra"
    created = await create(user_client, hostname="db-2", node_id="auto", placement={"avoid_tags": ["DB"]})
    placement = created["operation"]["placement"]
    assert placement["node_name"] == "pve3"
    assert by_node(placement)["pve2"]["reasons"] == ["avoid_tags: the node runs guests tagged db."]

    # More memory than pve1 and pve3 have available: only pve2 can take it.
    created = await create(user_client, hostname="big-1", node_id="auto", memory_mb=40 * 1024)
    nodes = by_node(created["operation"]["placement"])
    assert created["container"]["node"]["name"] == "pve2"
    assert nodes["pve1"]["reasons"][0].startswith("memory: ")
    assert nodes["pve3"]["reasons"][0].endswith("the container asks for 40960 MiB.")


async def test_placement_needs_auto_or_no_node_and_consistent_requirements(
    user_client: UserClient, fleet: dict[str, str]
) -> None:
    body = create_body(node_id=fleet["pve1"], placement={"strategy": "spread"}, bridge="vmbr0")
    problem = assert_problem(await user_client.http.post("/api/containers", json=body), 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["placement"]

    body = create_body(node_id="auto", bridge="vmbr0", placement={"require_bridge": "vmbr1", "avoid_tags": ["a b"]})
    problem = assert_problem(await user_client.http.post("/api/containers", json=body), 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["placement.require_bridge", "placement.avoid_tags[0]"]

    problem = assert_problem(await user_client.http.post("/api/containers", json=create_body(node_id="somewhere")), 422)
    assert problem["errors"][0]["field"] == "node_id"


async def test_a_node_without_the_os_image_or_room_on_the_required_storage_is_skipped(
    user_client: UserClient, fleet: dict[str, str], simulator: Simulator, db: async_sessionmaker[AsyncSession]
) -> None:
    # pve2 has lost the OS image and has no storage "fast"; pve3's "fast" is too small for an 8 GiB disk.
    del simulator.node("pve2").state.storages["local"].volumes[DEBIAN]
    simulator.node("pve1").state.storages["fast"] = SimStorage(
        name="fast", type="lvmthin", content={"rootdir", "images"}, total=200 * GIB, used=0
    )
    simulator.node("pve3").state.storages["fast"] = SimStorage(
        name="fast", type="lvmthin", content={"rootdir", "images"}, total=4 * GIB, used=GIB
    )
    body = create_body(hostname="fast-1", node_id="auto", placement={"require_storage": "fast"})
    report = (await user_client.http.post("/api/containers/preflight", json=body)).json()
    placement = report["placement"]
    nodes = by_node(placement)
    assert (placement["node_name"], placement["storage"]) == ("pve1", "fast")
    assert nodes["pve1"]["figures"]["storage_avail"] == 200 * GIB
    assert nodes["pve2"]["reasons"] == [
        "storage: Storage 'fast' does not exist on the node.",
        f"os_template: OS template {DEBIAN!r} is not on the node.",
    ]
    assert nodes["pve2"]["figures"]["storage_avail"] is None
    assert nodes["pve3"]["reasons"] == ["storage: Storage 'fast' has 3 GiB free; 8 GiB needed."]
    assert nodes["pve3"]["figures"]["storage_avail"] == 3 * GIB
    assert report["ok"] is True

    created = await create(user_client, hostname="fast-1", node_id="auto", placement={"require_storage": "fast"})
    assert created["container"]["node"]["name"] == "pve1"
    # The container gets the required storage.
    async with db() as session:
        container = await session.get(Container, created["container"]["id"])
        assert container is not None
        assert container.request["storage"] == "fast"


async def test_only_the_callers_nodes_are_candidates(
    user_client: UserClient, other_user_client: UserClient, fleet: dict[str, str]
) -> None:
    problem = assert_problem(
        await other_user_client.http.post("/api/containers", json=create_body(node_id="auto")),
        409,
        "no_node_configured",
    )
    assert "register a Proxmox node" in problem["detail"]
    report = (await user_client.http.post("/api/containers/preflight", json=create_body(node_id="auto"))).json()
    assert {c["node_id"] for c in report["placement"]["candidates"]} == set(fleet.values())


async def test_a_retry_with_the_idempotency_key_answers_the_first_placement_without_asking_the_nodes(
    user_client: UserClient, fleet: dict[str, str], simulator: Simulator
) -> None:
    body = create_body(hostname="once", placement={"strategy": "spread"})
    headers = {"Idempotency-Key": "place-once"}
    first = await user_client.http.post("/api/containers", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["container"]["node"]["name"] == "pve1"
    # Placing again now would refuse pve1; the retry still answers the first placement and asks no node.
    simulator.node("pve1").faults.unreachable = True
    asked = [len(n.requests) for n in simulator.nodes]
    retry = await user_client.http.post("/api/containers", json=body, headers=headers)
    assert retry.status_code == 202, retry.text
    assert retry.json() == first.json()
    assert retry.headers["location"] == first.headers["location"]
    assert [len(n.requests) for n in simulator.nodes] == asked
    # (The listing asks the nodes for live status.)
    assert len((await user_client.http.get("/api/containers")).json()["items"]) == 1
    asked = [len(n.requests) for n in simulator.nodes]
    # Another body with the same key is refused before any node is asked.
    other = await user_client.http.post("/api/containers", json={**body, "hostname": "twice"}, headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    assert [len(n.requests) for n in simulator.nodes] == asked
