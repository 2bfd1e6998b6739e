"""Live reads from a container's node for the lifecycle rules, with a short timeout."""

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import NodeEndpoint, node_errors, proxmox_client
from infrahaus_proxmox.errors import ProxmoxNotFound


class ProxmoxNodeProbe:
    """`NodeProbe` over the node's API token. Proxmox errors become the node domain errors (e.g. unreachable)."""

    def __init__(self, box: SecretBox, *, timeout: float = 5.0) -> None:
        self.box = box
        self.timeout = timeout

    async def live_status(self, node: Node, vmid: int) -> str:
        """The guest's status (`running`, `stopped`, ...); `missing` when Proxmox does not know it."""
        endpoint = NodeEndpoint.from_node(node, self.box)
        with node_errors(endpoint):
            async with proxmox_client(endpoint, timeout=self.timeout) as client:
                try:
                    status = await client.lxc.status(endpoint.require_pve_node(), vmid)
                except ProxmoxNotFound:
                    return "missing"
        return status.status
