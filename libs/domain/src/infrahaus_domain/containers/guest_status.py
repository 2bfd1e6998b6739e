"""Live reads from a container's node for the lifecycle rules, with a short timeout."""

from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import NodeAccess, node_errors
from infrahaus_proxmox.errors import ProxmoxNotFound


class ProxmoxGuestStatus:
    """`GuestStatusReader` over the node's API token; Proxmox errors become node domain errors (e.g. unreachable)."""

    def __init__(self, access: NodeAccess, *, timeout: float = 5.0) -> None:
        self.access = access
        self.timeout = timeout

    async def live_status(self, node: Node, vmid: int) -> str:
        """The guest's status (`running`, `stopped`, ...); `missing` when Proxmox does not know it."""
        endpoint = self.access.endpoint(node)
        with node_errors(endpoint):
            async with self.access.client(endpoint, timeout=self.timeout) as client:
                try:
                    status = await client.lxc.status(endpoint.require_pve_node(), vmid)
                except ProxmoxNotFound:
                    return "missing"
        return status.status
