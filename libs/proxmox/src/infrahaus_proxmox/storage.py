"""/nodes/{node}/storage: storages and their content (templates, volumes)."""

import builtins
from typing import TYPE_CHECKING

from infrahaus_proxmox._paths import node_segment, storage_segment
from infrahaus_proxmox.models import Storage, StorageVolume
from infrahaus_proxmox.parsing import decode_list

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient


class StorageApi:
    def __init__(self, client: "ProxmoxClient"):
        self._client = client

    async def list(self, node: str, content: str | None = None) -> builtins.list[Storage]:
        """GET /nodes/{node}/storage, optionally only storages holding `content` (e.g. "rootdir")."""
        data = await self._client.request("GET", f"/nodes/{node_segment(node)}/storage", {"content": content})
        return decode_list(data, Storage, "storage list")

    async def content(self, node: str, storage: str, content: str | None = "vztmpl") -> builtins.list[StorageVolume]:
        """GET /nodes/{node}/storage/{storage}/content, by default container templates."""
        path = f"/nodes/{node_segment(node)}/storage/{storage_segment(storage)}/content"
        data = await self._client.request("GET", path, {"content": content})
        return decode_list(data, StorageVolume, "storage content")
