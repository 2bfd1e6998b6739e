"""The `node.vmids_refresh` actor fills the node's VMID cache from the cluster's guests (LXC and QEMU)."""

from typing import Any
from uuid import UUID

from infrahaus_domain.models.nodes import Node
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.state import SimGuest
from infrahaus_worker.actors.vmids import refresh_vmids
from infrahaus_worker.context import WorkerContext


def resource_calls(node: RunningNode) -> int:
    return sum(1 for r in node.requests if r.method == "GET" and r.path.endswith("/cluster/resources"))


async def test_refresh_fills_the_cache(
    worker_ctx: WorkerContext, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    sim_node.state.guests[500] = SimGuest(vmid=500, type="qemu", config={"name": "vm"})
    sim_node.state.guests[501] = SimGuest(vmid=501, type="lxc", config={"hostname": "ct"})
    before = resource_calls(sim_node)
    await refresh_vmids(worker_ctx, registered_node["id"])
    assert resource_calls(sim_node) == before + 1
    async with worker_ctx.unit() as u:
        node = await u.session.get(Node, UUID(registered_node["id"]))
        assert node is not None
        cached = await u.vmids.taken(node)
    assert cached.taken == [500, 501]
    assert resource_calls(sim_node) == before + 1  # served from the cache
