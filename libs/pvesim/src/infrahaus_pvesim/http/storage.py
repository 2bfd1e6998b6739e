"""/nodes/{node}/storage: the node's storages and their content (templates, volumes)."""

from typing import Any

from infrahaus_pvesim.http.common import ApiError, Ctx, ResourceHandlers, Routes
from infrahaus_pvesim.state import SimNode


def storage_entry(node: SimNode, name: str) -> dict[str, Any]:
    """The storage as ``GET /nodes/{node}/storage`` lists it (``/cluster/resources`` reuses its figures)."""
    storage = node.storages[name]
    used = storage.used + sum(storage.volumes.values())
    return {
        "storage": storage.name,
        "type": storage.type,
        "content": ",".join(sorted(storage.content)),
        "total": storage.total,
        "used": used,
        "avail": storage.total - used,
        "used_fraction": used / storage.total if storage.total else 0,
        "active": 1,
        "enabled": 1,
        "shared": 0,
    }


def _volume_kind(volid: str) -> tuple[str, str, int | None]:
    """(content type, format, owning vmid) of a volume id."""
    volname = volid.split(":", 1)[1]
    if volname.startswith("vztmpl/"):
        suffixes = {".tar.zst": "tzst", ".tar.gz": "tgz", ".tar.xz": "txz"}
        fmt = next((f for s, f in suffixes.items() if volname.endswith(s)), "tgz")
        return "vztmpl", fmt, None
    if volname.startswith("iso/"):
        return "iso", "iso", None
    owner = volname.split("-")[1] if volname.startswith(("vm-", "subvol-")) else None
    fmt = "subvol" if volname.startswith("subvol-") else "raw"
    return "rootdir", fmt, int(owner) if owner else None


class StorageHandlers(ResourceHandlers):
    def routes(self) -> Routes:
        return {
            ("GET", "/nodes/{node}/storage"): self.list,
            ("GET", "/nodes/{node}/storage/{storage}/content"): self.content,
        }

    async def list(self, ctx: Ctx) -> Any:
        wanted = set(ctx.params["content"].split(",")) if "content" in ctx.params else None
        result = []
        for name, storage in self.node.storages.items():
            if wanted is not None and not wanted & storage.content:
                continue
            if "storage" in ctx.params and ctx.params["storage"] != name:
                continue
            privs = self.access.privileges(ctx.who, f"/storage/{name}")
            if not privs & {"Datastore.Audit", "Datastore.AllocateSpace"}:
                continue
            result.append(storage_entry(self.node, name))
        return result

    async def content(self, ctx: Ctx) -> Any:
        name = ctx.path["storage"]
        storage = self.node.storages.get(name)
        if storage is None:
            raise ApiError(500, f"storage '{name}' does not exist")
        self.access.check(ctx.who, f"/storage/{name}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_of=True)
        content_filter = ctx.params.get("content")
        vmid_filter = ctx.integer("vmid")
        items = []
        for volid, size in sorted(storage.volumes.items()):
            content, fmt, owner = _volume_kind(volid)
            if content_filter is not None and content != content_filter:
                continue
            if vmid_filter is not None and owner != vmid_filter:
                continue
            item: dict[str, Any] = {
                "volid": volid,
                "format": fmt,
                "size": size,
                "content": content,
                "ctime": 1725000000,
            }
            if owner is not None:
                item["vmid"] = owner
            items.append(item)
        return items
