"""/cluster: resources across the (one-node) cluster, its status and the next free VMID."""

from typing import Any

from infrahaus_pvesim.http.common import Ctx, ResourceHandlers, Routes, param_error
from infrahaus_pvesim.http.lxc import guest_entry, visible
from infrahaus_pvesim.http.nodes import node_entry
from infrahaus_pvesim.http.storage import storage_entry


class ClusterHandlers(ResourceHandlers):
    def routes(self) -> Routes:
        return {
            ("GET", "/cluster/resources"): self.resources,
            ("GET", "/cluster/nextid"): self.nextid,
            ("GET", "/cluster/status"): self.status,
        }

    async def resources(self, ctx: Ctx) -> Any:
        kind = ctx.params.get("type")
        result: list[dict[str, Any]] = []
        if kind in (None, "node"):
            audit = "Sys.Audit" in self.access.privileges(ctx.who, f"/nodes/{self.node.name}")
            result.append(node_entry(self.node, self.fingerprint, stats=audit))
        if kind in (None, "storage"):
            for name in self.node.storages:
                if "Datastore.Audit" not in self.access.privileges(ctx.who, f"/storage/{name}"):
                    continue
                entry = storage_entry(self.node, name)
                result.append(
                    {
                        "id": f"storage/{self.node.name}/{name}",
                        "type": "storage",
                        "storage": name,
                        "node": self.node.name,
                        "status": "available",
                        "content": entry["content"],
                        "plugintype": entry["type"],
                        "maxdisk": entry["total"],
                        "disk": entry["used"],
                        "shared": 0,
                    }
                )
        if kind in (None, "vm"):
            for guest in sorted(self.node.guests.values(), key=lambda g: g.vmid):
                if not visible(self.access, ctx.who, guest):
                    continue
                entry = guest_entry(guest)
                entry |= {"id": f"{guest.type}/{guest.vmid}", "node": self.node.name, "maxcpu": entry.pop("cpus")}
                if self.node.rrd is not None:
                    # Status comes from pvestatd's last broadcast; a guest it has not seen yet is `unknown`
                    # (pve-manager PVE/API2/Cluster.pm resources, PVE/API2Tools.pm extract_vm_stats).
                    entry["status"] = self.node.rrd.get(guest.vmid, "unknown")
                result.append(entry)
        return result

    async def status(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, "/", ["Sys.Audit"])
        # A standalone node: no "cluster" entry, only the node itself.
        return [
            {
                "type": "node",
                "id": f"node/{self.node.name}",
                "name": self.node.name,
                "nodeid": 0,
                "ip": self.config.bind,
                "local": 1,
                "online": 1,
                "level": "",
            }
        ]

    async def nextid(self, ctx: Ctx) -> Any:
        vmid = ctx.integer("vmid")
        if vmid is not None:
            if vmid in self.node.guests:
                raise param_error({"vmid": f"VM {vmid} already exists"})
            return str(vmid)
        candidate = 100
        while candidate in self.node.guests:
            candidate += 1
        # PVE returns the id as a string.
        return str(candidate)
