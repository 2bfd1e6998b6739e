"""/nodes: the cluster's nodes, their status and network interfaces."""

import builtins
from typing import TYPE_CHECKING

from infrahaus_proxmox._paths import node_segment
from infrahaus_proxmox.models import NetworkInterface, NodeStatus, NodeSummary
from infrahaus_proxmox.parsing import decode_list, decode_one

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient


class NodesApi:
    def __init__(self, client: "ProxmoxClient"):
        self._client = client

    async def list(self) -> builtins.list[NodeSummary]:
        """GET /nodes."""
        return decode_list(await self._client.request("GET", "/nodes"), NodeSummary, "node list")

    async def status(self, node: str) -> NodeStatus:
        """GET /nodes/{node}/status: CPU, memory, root filesystem, uptime, versions."""
        data = await self._client.request("GET", f"/nodes/{node_segment(node)}/status")
        return decode_one(data, NodeStatus, "node status")

    async def network(self, node: str, type: str | None = "bridge") -> builtins.list[NetworkInterface]:
        """GET /nodes/{node}/network, by default only bridges; `type=None` lists every interface."""
        data = await self._client.request("GET", f"/nodes/{node_segment(node)}/network", {"type": type})
        return decode_list(data, NetworkInterface, "network")
