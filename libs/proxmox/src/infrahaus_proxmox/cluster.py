"""/cluster: resources across the cluster and the next free VMID."""

from typing import TYPE_CHECKING

from infrahaus_proxmox._paths import vmid_segment
from infrahaus_proxmox.errors import ProxmoxResponseError
from infrahaus_proxmox.models import ClusterResource
from infrahaus_proxmox.parsing import decode_list

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient


class ClusterApi:
    def __init__(self, client: "ProxmoxClient"):
        self._client = client

    async def resources(self, type: str | None = None) -> list[ClusterResource]:
        """GET /cluster/resources, optionally filtered ("vm", "storage", "node", "sdn")."""
        data = await self._client.request("GET", "/cluster/resources", {"type": type})
        return decode_list(data, ClusterResource, "cluster resources")

    async def nextid(self, vmid: int | None = None) -> int:
        """GET /cluster/nextid: the next free VMID, or `vmid` itself if free.

        A taken `vmid` raises ProxmoxValidationError (Proxmox answers 400 "VM n already exists").
        """
        params = {"vmid": vmid_segment(vmid)} if vmid is not None else None
        data = await self._client.request("GET", "/cluster/nextid", params)
        try:
            return int(data)
        except (TypeError, ValueError) as exc:
            raise ProxmoxResponseError(f"nextid answer is not a number: {data!r:.40}") from exc
