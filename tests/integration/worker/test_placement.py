"""Placed creations run to the end on the node placement picked; a created guest replaces its pending count."""

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from infrahaus_domain.containers.marker import split_tags, tags_with_marker
from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.fixtures.nodes import node_body
from tests.integration.worker.helpers import container, operation, request_container

GIB = 1024**3
DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        task_duration=0.02,
        nodes=[
            SimNodeConfig(name="pve1", memory=16 * GIB, guests=0),
            SimNodeConfig(name="pve2", memory=64 * GIB, guests=3),
            SimNodeConfig(name="pve3", memory=32 * GIB, guests=1),
        ],
    )


async def test_placed_creations_are_created_on_the_picked_nodes(
    worker_ctx: WorkerContext, user_client: UserClient, simulator: Simulator, simulator_config: SimulatorConfig
) -> None:
    for node in simulator.nodes:
        response = await user_client.http.post("/api/nodes", json=node_body(node, simulator_config))
        assert response.status_code == 201, response.text

    body: dict[str, Any] = {"os_template": DEBIAN, "start_after_create": False}
    most_free_id, most_free_op, most_free = await request_container(user_client, hostname="big", node_id="auto", **body)
    spread_id, spread_op, spread = await request_container(
        user_client, hostname="small", placement={"strategy": "spread"}, **body
    )
    assert most_free["container"]["node"]["name"] == "pve2"
    assert spread["container"]["node"]["name"] == "pve1"

    for op_id in (most_free_op, spread_op):
        await create_container(worker_ctx, op_id)
        op = await operation(worker_ctx, op_id)
        assert op.status == "succeeded", op.error
        # The worker's result does not replace the decision.
        assert op.placement is not None
        assert op.result is not None
        assert "placement" not in op.result

    for container_id, node_name in ((most_free_id, "pve2"), (spread_id, "pve1")):
        ct = await container(worker_ctx, container_id)
        assert ct is not None
        assert ct.lifecycle == "ready"
        guest = simulator.node(node_name).state.guests[ct.vmid]
        assert guest.type == "lxc"
        assert set(tags_with_marker(UUID(container_id), [])) <= set(split_tags(guest.config.get("tags")))
        # On that node only (separate nodes, not one cluster: their VMIDs may repeat, hostnames here do not).
        holders = [
            n.name for n in simulator.nodes for g in n.state.guests.values() if g.config.get("hostname") == ct.hostname
        ]
        assert holders == [node_name]

    # The created guest counts once on pve1 (it is no longer pending): pve1 has 1 guest, pve3 1 (more memory).
    report = (
        await user_client.http.post(
            "/api/containers/preflight",
            json={"hostname": "next", "placement": {"strategy": "spread"}, **body},
        )
    ).json()
    guests = {c["node_name"]: c["figures"]["guests"] for c in report["placement"]["candidates"]}
    assert guests == {"pve1": 1, "pve2": 4, "pve3": 1}
    assert report["placement"]["node_name"] == "pve3"
