"""/nodes: the node list, the node's status and its network interfaces."""

import ipaddress
from typing import Any

from infrahaus_pvesim.http.common import GIB, Ctx, ResourceHandlers, Routes
from infrahaus_pvesim.http.lxc import memory_used
from infrahaus_pvesim.state import SimNode

PVE_MANAGER = "pve-manager/8.2.4/faa83925c9641325"
KERNEL = "Linux 6.8.12-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-1 (2024-08-05T16:17Z) x86_64"


def node_entry(node: SimNode, fingerprint: str, *, stats: bool = True) -> dict[str, Any]:
    """The node as ``GET /nodes`` and ``/cluster/resources`` list it; without ``Sys.Audit`` on the node its usage
    figures are left out (pve-manager PVE/API2Tools.pm extract_node_stats)."""
    used_mem = node.memory_total // 4 + sum(memory_used(g) for g in node.guests.values())
    entry: dict[str, Any] = {
        "node": node.name,
        "id": f"node/{node.name}",
        "type": "node",
        "status": "online",
        "level": "",
        "ssl_fingerprint": fingerprint,
    }
    if stats:
        entry |= {
            "cpu": 0.031,
            "maxcpu": node.cpus,
            "mem": min(used_mem, node.memory_total),
            "maxmem": node.memory_total,
            "disk": 12 * GIB,
            "maxdisk": 100 * GIB,
            "uptime": node.uptime,
        }
    return entry


class NodesHandlers(ResourceHandlers):
    def routes(self) -> Routes:
        return {
            ("GET", "/nodes"): self.list,
            ("GET", "/nodes/{node}/status"): self.status,
            ("GET", "/nodes/{node}/network"): self.network,
        }

    async def list(self, ctx: Ctx) -> Any:
        audit = "Sys.Audit" in self.access.privileges(ctx.who, f"/nodes/{self.node.name}")
        return [node_entry(self.node, self.fingerprint, stats=audit)]

    async def status(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/nodes/{self.node.name}", ["Sys.Audit"])
        entry = node_entry(self.node, self.fingerprint)
        total, used = self.node.memory_total, entry["mem"]
        # pve-common src/PVE/ProcFSTools.pm read_meminfo (as PVE/API2/Nodes.pm status answers it): `available` is the
        # kernel's MemAvailable, `used` is total minus it, `free` is MemFree (less: the page cache is not free).
        available = total - used
        return {
            "cpu": entry["cpu"],
            "wait": 0.0,
            "idle": 0,
            "cpuinfo": {
                "cpus": self.node.cpus,
                "cores": self.node.cpus // 2,
                "sockets": 1,
                "model": "Simulated CPU @ 3.00GHz",
                "mhz": "3000.000",
                "hvm": "1",
                "user_hz": 100,
                "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov",
            },
            "memory": {"total": total, "used": used, "free": available - available // 8, "available": available},
            "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB},
            "rootfs": {"total": 100 * GIB, "used": 12 * GIB, "free": 88 * GIB, "avail": 83 * GIB},
            "ksm": {"shared": 0},
            "loadavg": ["0.12", "0.18", "0.21"],
            "uptime": self.node.uptime,
            "pveversion": PVE_MANAGER,
            "kversion": KERNEL,
            "current-kernel": {
                "sysname": "Linux",
                "release": "6.8.12-1-pve",
                "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-1 (2024-08-05T16:17Z)",
                "machine": "x86_64",
            },
            "boot-info": {"mode": "efi", "secureboot": 0},
        }

    def _may_see_bridge(self, ctx: Ctx, bridge: str) -> bool:
        """pve-manager PVE/API2/Network.pm index: a bridge is listed only with SDN.Audit or SDN.Use on
        /sdn/zones/localnetwork/<bridge> or on one of its VLANs' ACL paths (RPCEnvironment check_sdn_bridge)."""
        path = f"/sdn/zones/localnetwork/{bridge}"
        privs = ["SDN.Audit", "SDN.Use"]
        return self.access.can(ctx.who, path, privs) or any(
            self.access.can(ctx.who, vlan, privs) for vlan in self.access.acl_paths_below(path)
        )

    async def network(self, ctx: Ctx) -> Any:
        kind = ctx.params.get("type")
        result: list[dict[str, Any]] = []
        if kind in (None, "eth"):
            result.append(
                {"iface": "eno1", "type": "eth", "active": 1, "exists": 1, "method": "manual", "families": ["inet"]}
            )
        if kind in (None, "bridge", "any_bridge", "any_local_bridge"):
            for index, bridge in enumerate(self.node.bridges.values()):
                if not self._may_see_bridge(ctx, bridge.iface):
                    continue
                entry: dict[str, Any] = {
                    "iface": bridge.iface,
                    "type": "bridge",
                    "active": 1 if bridge.active else 0,
                    "autostart": 1,
                    "method": "static" if bridge.cidr else "manual",
                    "families": ["inet"],
                    "bridge_ports": "eno1" if index == 0 else "",
                    "bridge_stp": "off",
                    "bridge_fd": "0",
                    "priority": index + 3,
                }
                if bridge.cidr:
                    iface = ipaddress.ip_interface(bridge.cidr)
                    entry |= {
                        "cidr": bridge.cidr,
                        "address": str(iface.ip),
                        "netmask": str(iface.network.prefixlen),
                        "gateway": str(next(iter(iface.network.hosts()))),
                    }
                result.append(entry)
        return result
