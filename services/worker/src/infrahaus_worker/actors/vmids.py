"""Node-level actors: refresh a node's VMID cache; run one reconciliation pass."""

from uuid import UUID

from infrahaus_domain.models.nodes import Node
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.reconciler import reconcile


async def refresh_vmids(ctx: WorkerContext, node_id: str) -> None:
    """Reload the node's taken VMIDs (LXC and QEMU) into the cache; an unknown node is ignored."""
    async with ctx.unit() as u:
        node = await u.session.get(Node, UUID(node_id))
        if node is not None:
            await u.vmids.refresh(node)


async def reconcile_operations(ctx: WorkerContext) -> None:
    await reconcile(ctx)
