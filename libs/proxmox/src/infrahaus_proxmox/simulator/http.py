"""The HTTPS API of one simulated node, on ``/api2/json`` with Proxmox semantics.

Answers are ``{"data": ...}``; errors carry the message in the HTTP reason phrase as pveproxy
does (400 "Parameter verification failed." with ``errors`` per field, 401, 403 "Permission
check failed (/vms/100, VM.Allocate)", 500 "CT 100 already exists on node 'pve'", 501 for
methods that do not exist). Every request is validated against the PVE schema, delayed by the
node's latency, subject to injected faults, and recorded in ``requests``.
"""

import asyncio
import hashlib
import ipaddress
import json
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from infrahaus_proxmox.simulator import sandbox
from infrahaus_proxmox.simulator.access import AccessControl, AccessError, Principal
from infrahaus_proxmox.simulator.config import SimulatorConfig
from infrahaus_proxmox.simulator.faults import NodeFaults
from infrahaus_proxmox.simulator.schema import (
    API_PREFIX,
    RouteMatch,
    UnknownPathError,
    match_path,
    parse_property_string,
    validate_params,
)
from infrahaus_proxmox.simulator.state import SimGuest, SimNode, SimTask
from infrahaus_proxmox.simulator.tasks import TaskError, TaskLog, TaskRunner, task_status
from infrahaus_proxmox.upid import Upid

PVE_VERSION = {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}
PVE_MANAGER = "pve-manager/8.2.4/faa83925c9641325"
KERNEL = "Linux 6.8.12-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-1 (2024-08-05T16:17Z) x86_64"
# Keys whose values never go into the request log.
_SECRET_PARAMS = {"password", "new-password", "otp", "tfa-challenge"}
# Proxmox's OUI for generated guest MAC addresses.
_MAC_PREFIX = "BC:24:11"
_GIB = 1024**3
_MIB = 1024**2


@dataclass(frozen=True)
class RecordedRequest:
    """One request the node answered (for tests: "no Proxmox request while the cache is warm")."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    auth: str | None  # "token" | "ticket" | None


class ApiError(Exception):
    """An error answer: ``status`` with ``message`` as reason phrase (and per-field ``errors`` for 400)."""

    def __init__(self, status: int, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = dict(errors) if errors else None


def param_error(errors: Mapping[str, str]) -> ApiError:
    return ApiError(400, "Parameter verification failed.", errors)


@dataclass
class Ctx:
    params: dict[str, str]
    path: dict[str, str]
    principal: Principal | None

    @property
    def who(self) -> Principal:
        if self.principal is None:
            raise ApiError(401, "No ticket")
        return self.principal

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name)
        return default if value is None else value == "1"

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.params.get(name)
        return default if value is None else int(value)

    @property
    def vmid(self) -> int:
        return int(self.path["vmid"])


Handler = Callable[[Ctx], Awaitable[Any]]


def size_bytes(size: str) -> int:
    """``8G`` / ``512M`` / ``1T`` / plain bytes -> bytes."""
    units = {"K": 1024, "M": _MIB, "G": _GIB, "T": 1024**4}
    if size and size[-1].upper() in units:
        return int(float(size[:-1]) * units[size[-1].upper()])
    return int(float(size))


def _print_property_string(values: Mapping[str, str], first: tuple[str, ...] = ()) -> str:
    keys = [k for k in first if k in values] + sorted(k for k in values if k not in first)
    return ",".join(f"{k}={values[k]}" for k in keys)


@dataclass
class NodeApi:
    """Request handling for one node; `app()` builds the aiohttp application."""

    node: SimNode
    faults: NodeFaults
    access: AccessControl
    tasks: TaskRunner
    config: SimulatorConfig
    fingerprint: str
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "/version"): self.version,
            ("GET", "/access/ticket"): self.ticket_index,
            ("POST", "/access/ticket"): self.ticket,
            ("GET", "/access/permissions"): self.permissions,
            ("GET", "/nodes"): self.nodes,
            ("GET", "/nodes/{node}/status"): self.node_status,
            ("GET", "/nodes/{node}/storage"): self.storage_list,
            ("GET", "/nodes/{node}/storage/{storage}/content"): self.storage_content,
            ("GET", "/nodes/{node}/network"): self.network,
            ("GET", "/cluster/resources"): self.cluster_resources,
            ("GET", "/cluster/nextid"): self.nextid,
            ("GET", "/cluster/status"): self.cluster_status,
            ("GET", "/nodes/{node}/lxc"): self.lxc_list,
            ("POST", "/nodes/{node}/lxc"): self.lxc_create,
            ("GET", "/nodes/{node}/qemu"): self.qemu_list,
            ("GET", "/nodes/{node}/lxc/{vmid}"): self.lxc_index,
            ("DELETE", "/nodes/{node}/lxc/{vmid}"): self.lxc_delete,
            ("GET", "/nodes/{node}/lxc/{vmid}/config"): self.lxc_config,
            ("PUT", "/nodes/{node}/lxc/{vmid}/config"): self.lxc_config_update,
            ("GET", "/nodes/{node}/lxc/{vmid}/status"): self.lxc_status_index,
            ("GET", "/nodes/{node}/lxc/{vmid}/status/current"): self.lxc_status,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/start"): self.lxc_start,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/stop"): self.lxc_stop,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"): self.lxc_shutdown,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot"): self.lxc_reboot,
            ("GET", "/nodes/{node}/lxc/{vmid}/interfaces"): self.lxc_interfaces,
            ("GET", "/nodes/{node}/tasks"): self.task_list,
            ("GET", "/nodes/{node}/tasks/{upid}/status"): self.task_status,
            ("GET", "/nodes/{node}/tasks/{upid}/log"): self.task_log,
        }

    # ------------------------------------------------------------------ plumbing

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * _MIB)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        # A blackholed node never answers, also on connections opened before the fault.
        while self.faults.blackhole and request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110 - also watches the client's transport, which has no event
            await asyncio.sleep(0.05)
        params: dict[str, list[str]] = {}
        principal: Principal | None = None
        try:
            params = await self._read_params(request)
            response = await self._dispatch(request, params)
            principal = response[1]
            status, body, reason = 200, {"data": response[0]}, None
            if isinstance(response[0], _WithTotal):
                body = {"data": response[0].data, "total": response[0].total}
        except ApiError as exc:
            status, reason = exc.status, exc.message
            body = {"data": None, "message": f"{exc.message}\n"}
            if exc.errors is not None:
                body["errors"] = exc.errors
        except Exception as exc:  # pveproxy turns any die() into a 500 with the message as reason phrase
            message = " ".join(str(exc).split()) or type(exc).__name__
            status, reason, body = 500, message, {"data": None, "message": f"{message}\n"}
        # Every answer takes at least the node's latency, errors included.
        remaining = self.faults.latency - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        flat = {k: ("********" if k in _SECRET_PARAMS else v[-1]) for k, v in params.items()}
        auth_kind = principal.kind if principal is not None else self._auth_kind(request)
        self.requests.append(RecordedRequest(request.method, request.path, flat, status, auth_kind))
        return web.Response(
            status=status,
            reason=reason,
            text=json.dumps(body),
            content_type="application/json",
            charset="utf-8",
            headers={"Server": "pve-api-daemon/3.0", "Cache-Control": "max-age=0", "Pragma": "no-cache"},
        )

    @staticmethod
    def _auth_kind(request: web.Request) -> str | None:
        if request.headers.get("Authorization", "").startswith("PVEAPIToken"):
            return "token"
        return "ticket" if "PVEAuthCookie" in request.cookies else None

    @staticmethod
    async def _read_params(request: web.Request) -> dict[str, list[str]]:
        params: dict[str, list[str]] = {}
        for key, value in request.query.items():
            params.setdefault(key, []).append(value)
        if request.method in ("POST", "PUT") and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    payload = await request.json()
                except ValueError as exc:
                    raise ApiError(400, "Parameter verification failed.", {"body": "invalid JSON"}) from exc
                if not isinstance(payload, dict):
                    raise ApiError(400, "Parameter verification failed.", {"body": "expected a JSON object"})
                for key, value in payload.items():
                    if isinstance(value, bool):
                        text = "1" if value else "0"
                    else:
                        text = value if isinstance(value, str) else json.dumps(value)
                    params.setdefault(key, []).append(text)
            else:
                form = await request.post()
                for key, field_value in form.items():
                    if isinstance(field_value, str):
                        params.setdefault(key, []).append(field_value)
        return params

    async def _dispatch(self, request: web.Request, raw: dict[str, list[str]]) -> tuple[Any, Principal | None]:
        failure = self.faults.take_http_failure(request.method, request.path)
        if failure is not None:
            raise ApiError(failure.status, failure.reason)
        if not request.path.startswith(API_PREFIX + "/") and request.path != API_PREFIX:
            raise ApiError(501, f"Method '{request.method} {request.path}' not implemented")
        try:
            route = match_path(request.method, request.path)
        except UnknownPathError as exc:
            raise ApiError(501, str(exc)) from exc
        template = route.operation.template
        principal = None
        if template != "/access/ticket":
            principal = self._authenticate(request)
        violations = validate_params(route, raw)
        if violations:
            raise param_error({v.field: v.message for v in violations})
        handler = self._routes.get((request.method, template))
        if handler is None:
            raise ApiError(501, f"Method '{request.method} {template}' not implemented")
        if "node" in route.path_params and route.path_params["node"] != self.node.name:
            # A standalone node resolves other node names to proxy to them, and fails like this.
            node = route.path_params["node"]
            raise ApiError(
                500,
                f"hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known",
            )
        ctx = Ctx({k: v[-1] for k, v in raw.items()}, dict(route.path_params), principal)
        try:
            return await handler(ctx), principal
        except AccessError as exc:
            raise ApiError(exc.status, exc.message) from exc

    def _authenticate(self, request: web.Request) -> Principal:
        cookie = request.cookies.get("PVEAuthCookie")
        if cookie is not None:
            cookie = urllib.parse.unquote(cookie)
        try:
            return self.access.authenticate(
                request.headers.get("Authorization"), cookie, request.headers.get("CSRFPreventionToken"), request.method
            )
        except AccessError as exc:
            raise ApiError(exc.status, exc.message) from exc

    def _guest(self, vmid: int, type: str = "lxc") -> SimGuest:
        guest = self.node.guests.get(vmid)
        if guest is None or guest.type != type:
            raise ApiError(500, f"Configuration file '{self.node.config_path(vmid, 'lxc')}' does not exist")
        return guest

    @staticmethod
    def _check_lock(guest: SimGuest) -> None:
        if guest.lock is not None:
            raise ApiError(500, f"CT is locked ({guest.lock})")

    # ------------------------------------------------------------------ access

    async def version(self, ctx: Ctx) -> Any:
        return dict(PVE_VERSION)

    async def ticket_index(self, ctx: Ctx) -> Any:
        # PVE's GET /access/ticket is a no-op that lets login forms probe the API.
        return None

    async def ticket(self, ctx: Ctx) -> Any:
        try:
            return self.access.login(
                ctx.params["username"], ctx.params["password"], ctx.params.get("realm"), ctx.params.get("tfa-challenge")
            )
        except AccessError as exc:
            raise ApiError(exc.status, exc.message) from exc

    async def permissions(self, ctx: Ctx) -> Any:
        return self.access.permissions(ctx.who, ctx.params.get("path"))

    # ------------------------------------------------------------------ node

    def _node_entry(self) -> dict[str, Any]:
        used_mem = self.node.memory_total // 4 + sum(self._mem_used(g) for g in self.node.guests.values())
        return {
            "node": self.node.name,
            "id": f"node/{self.node.name}",
            "type": "node",
            "status": "online",
            "cpu": 0.031,
            "maxcpu": self.node.cpus,
            "mem": min(used_mem, self.node.memory_total),
            "maxmem": self.node.memory_total,
            "disk": 12 * _GIB,
            "maxdisk": 100 * _GIB,
            "uptime": self.node.uptime,
            "level": "",
            "ssl_fingerprint": self.fingerprint,
        }

    async def nodes(self, ctx: Ctx) -> Any:
        return [self._node_entry()]

    async def node_status(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/nodes/{self.node.name}", ["Sys.Audit"])
        entry = self._node_entry()
        total, used = self.node.memory_total, entry["mem"]
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
            "memory": {"total": total, "used": used, "free": total - used},
            "swap": {"total": 8 * _GIB, "used": 0, "free": 8 * _GIB},
            "rootfs": {"total": 100 * _GIB, "used": 12 * _GIB, "free": 88 * _GIB, "avail": 83 * _GIB},
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

    def _storage_entry(self, name: str) -> dict[str, Any]:
        storage = self.node.storages[name]
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

    async def storage_list(self, ctx: Ctx) -> Any:
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
            result.append(self._storage_entry(name))
        return result

    async def storage_content(self, ctx: Ctx) -> Any:
        name = ctx.path["storage"]
        storage = self.node.storages.get(name)
        if storage is None:
            raise ApiError(500, f"storage '{name}' does not exist")
        self.access.check(ctx.who, f"/storage/{name}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_of=True)
        content_filter = ctx.params.get("content")
        vmid_filter = ctx.integer("vmid")
        items = []
        for volid, size in sorted(storage.volumes.items()):
            content, fmt, owner = self._volume_kind(volid)
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

    @staticmethod
    def _volume_kind(volid: str) -> tuple[str, str, int | None]:
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

    async def network(self, ctx: Ctx) -> Any:
        kind = ctx.params.get("type")
        result: list[dict[str, Any]] = []
        if kind in (None, "eth"):
            result.append(
                {"iface": "eno1", "type": "eth", "active": 1, "exists": 1, "method": "manual", "families": ["inet"]}
            )
        if kind in (None, "bridge", "any_bridge", "any_local_bridge"):
            for index, bridge in enumerate(self.node.bridges.values()):
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

    # ------------------------------------------------------------------ cluster

    def _mem_used(self, guest: SimGuest) -> int:
        if guest.status != "running":
            return 0
        return int(size_bytes(guest.config.get("memory", "512") + "M") * 0.3)

    def _guest_entry(self, guest: SimGuest) -> dict[str, Any]:
        maxmem = int(guest.config.get("memory", "512")) * _MIB
        running = guest.status == "running"
        maxdisk = self._disk_size(guest)
        entry: dict[str, Any] = {
            "vmid": guest.vmid,
            "name": guest.config.get("hostname" if guest.type == "lxc" else "name", f"CT{guest.vmid}"),
            "status": guest.status,
            "type": guest.type,
            "uptime": guest.uptime,
            "cpu": 0.012 if running else 0,
            "cpus": int(guest.config.get("cores", "1")),
            "maxmem": maxmem,
            "mem": self._mem_used(guest),
            "maxdisk": maxdisk,
            "disk": maxdisk // 5 if running else 0,
            "netin": 123456 if running else 0,
            "netout": 65432 if running else 0,
            "diskread": 0,
            "diskwrite": 0,
            "template": 0,
        }
        if guest.type == "lxc":
            entry["maxswap"] = int(guest.config.get("swap", "512")) * _MIB
            entry["swap"] = 0
        if guest.lock:
            entry["lock"] = guest.lock
        if "tags" in guest.config:
            entry["tags"] = guest.config["tags"]
        return entry

    @staticmethod
    def _disk_size(guest: SimGuest) -> int:
        disk = guest.config.get("rootfs") or guest.config.get("scsi0") or ""
        for part in disk.split(","):
            if part.startswith("size="):
                return size_bytes(part[5:])
        return 0

    def _visible(self, principal: Principal, guest: SimGuest) -> bool:
        return "VM.Audit" in self.access.privileges(principal, f"/vms/{guest.vmid}")

    async def cluster_resources(self, ctx: Ctx) -> Any:
        kind = ctx.params.get("type")
        result: list[dict[str, Any]] = []
        if kind in (None, "node") and "Sys.Audit" in self.access.privileges(ctx.who, f"/nodes/{self.node.name}"):
            result.append(self._node_entry())
        if kind in (None, "storage"):
            for name in self.node.storages:
                if "Datastore.Audit" not in self.access.privileges(ctx.who, f"/storage/{name}"):
                    continue
                entry = self._storage_entry(name)
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
                if not self._visible(ctx.who, guest):
                    continue
                entry = self._guest_entry(guest)
                entry |= {"id": f"{guest.type}/{guest.vmid}", "node": self.node.name, "maxcpu": entry.pop("cpus")}
                result.append(entry)
        return result

    async def cluster_status(self, ctx: Ctx) -> Any:
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

    # ------------------------------------------------------------------ lxc

    async def lxc_list(self, ctx: Ctx) -> Any:
        guests = sorted(self.node.guests.values(), key=lambda g: g.vmid)
        return [self._guest_entry(g) for g in guests if g.type == "lxc" and self._visible(ctx.who, g)]

    async def qemu_list(self, ctx: Ctx) -> Any:
        guests = sorted(self.node.guests.values(), key=lambda g: g.vmid)
        return [self._guest_entry(g) for g in guests if g.type == "qemu" and self._visible(ctx.who, g)]

    async def lxc_index(self, ctx: Ctx) -> Any:
        self._guest(ctx.vmid)
        subdirs = ["config", "status", "vncproxy", "termproxy", "vncwebsocket", "spiceproxy", "migrate", "clone"]
        subdirs += ["firewall", "snapshot", "rrd", "rrddata", "pending", "feature", "template", "interfaces", "mtunnel"]
        return [{"subdir": s} for s in subdirs]

    def _check_modify_perm(
        self, principal: Principal, vmid: int, params: Mapping[str, str], guest: SimGuest | None
    ) -> None:
        """PVE::LXC::check_ct_modify_config_perm: per-option privileges and the root@pam-only options."""
        path = f"/vms/{vmid}"
        for key, value in params.items():
            base = key.rstrip("0123456789")
            if key in ("cores", "cpulimit", "cpuunits"):
                self.access.check(principal, path, ["VM.Config.CPU"])
            elif key in ("memory", "swap"):
                self.access.check(principal, path, ["VM.Config.Memory"])
            elif base == "net":
                self.access.check(principal, path, ["VM.Config.Network"])
                # PVE 8 check_bridge_access: local bridges are vnets of the zone "localnetwork".
                bridge = parse_property_string(value, {}).get("bridge")
                if bridge is not None and not principal.is_root:
                    self.access.check(principal, f"/sdn/zones/localnetwork/{bridge}", ["SDN.Use"])
            elif key == "rootfs" or base in ("mp", "unused"):
                self.access.check(principal, path, ["VM.Config.Disk"])
                volume = value.split(",")[0].removeprefix("volume=")
                if base == "mp" and volume.startswith("/") and not principal.is_root:
                    raise AccessError(
                        403, "Permission check failed (mount point type bind is only allowed for root@pam)"
                    )
            elif base == "dev":
                if not principal.is_root:
                    raise AccessError(
                        403, "Permission check failed (changing device passthrough is only allowed for root@pam)"
                    )
            elif key == "features":
                self._check_features(principal, params, guest, value)
            elif key not in _CREATE_ONLY:
                self.access.check(principal, path, ["VM.Config.Options"])

    def _check_features(
        self, principal: Principal, params: Mapping[str, str], guest: SimGuest | None, value: str
    ) -> None:
        if principal.is_root:
            return
        if guest is not None:
            unprivileged = guest.config.get("unprivileged", "0") == "1"
            before = _features(guest.config.get("features", ""))
        else:
            unprivileged = params.get("unprivileged", "0") == "1"
            before = {}
        if not unprivileged:
            raise AccessError(
                403,
                "Permission check failed (changing feature flags for privileged container is only allowed for"
                " root@pam)",
            )
        after = _features(value)
        changed = {k for k in set(before) | set(after) if before.get(k, "0") != after.get(k, "0")}
        if changed - {"nesting"}:
            raise AccessError(
                403, "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
            )

    async def lxc_create(self, ctx: Ctx) -> Any:
        vmid = int(ctx.params["vmid"])
        who = ctx.who
        self.access.check(who, f"/vms/{vmid}", ["VM.Allocate"])
        existing = self.node.guests.get(vmid)
        if existing is not None:
            kind = "CT" if existing.type == "lxc" else "VM"
            raise ApiError(500, f"{kind} {vmid} already exists on node '{self.node.name}'")
        ostemplate = ctx.params["ostemplate"]
        template_storage = ostemplate.partition(":")[0]
        if template_storage not in self.node.storages:
            raise ApiError(500, f"storage '{template_storage}' does not exist")
        self.access.check(
            who, f"/storage/{template_storage}", ["Datastore.AllocateSpace", "Datastore.Audit"], any_of=True
        )
        storage = ctx.params.get("storage", "local")
        rootfs = ctx.params.get("rootfs", f"{storage}:4")
        rootfs_storage = rootfs.removeprefix("volume=").partition(":")[0]
        self.access.check(who, f"/storage/{rootfs_storage}", ["Datastore.AllocateSpace"])
        self._check_modify_perm(who, vmid, ctx.params, None)
        config = self._initial_config(vmid, ctx.params, ostemplate)
        guest = SimGuest(vmid=vmid, type="lxc", config=config, lock="create")
        self.node.guests[vmid] = guest
        start_after = ctx.flag("start")
        disks = {"rootfs": rootfs} | {k: v for k, v in sorted(ctx.params.items()) if _indexed(k, "mp")}
        ssh_keys = ctx.params.get("ssh-public-keys")

        async def body(log: TaskLog) -> None:
            await self._create_body(log, guest, ostemplate, disks, start_after, ssh_keys)

        def rollback() -> None:
            if self.node.guests.get(vmid) is guest:
                del self.node.guests[vmid]
            self._free_volumes(vmid, None)
            if guest.rootfs is not None:
                sandbox.destroy_rootfs(guest.rootfs)
                guest.rootfs = None

        return self.tasks.start("vzcreate", vmid, who.authid, body, on_failure=rollback)

    def _initial_config(self, vmid: int, params: Mapping[str, str], ostemplate: str) -> dict[str, str]:
        config: dict[str, str] = {
            "arch": params.get("arch", "amd64"),
            "hostname": params.get("hostname", f"CT{vmid}"),
            "memory": params.get("memory", "512"),
            "swap": params.get("swap", "512"),
            "ostype": params.get("ostype") or _ostype_for(ostemplate),
        }
        for key, value in params.items():
            if key in _CREATE_ONLY or key == "rootfs" or _indexed(key, "mp"):
                continue
            if key.startswith("net") and key[3:].isdigit():
                config[key] = self._normalize_net(vmid, key, value)
            elif key == "features":
                config[key] = _print_property_string(_features(value))
            elif key in _CONFIG_KEYS:
                config[key] = value
        return config

    def _normalize_net(self, vmid: int, key: str, value: str) -> str:
        parsed = parse_property_string(value, {"name": {}})
        parsed.setdefault("hwaddr", _mac_for(f"{self.node.name}/{vmid}/{key}/{time.time_ns()}"))
        parsed.setdefault("type", "veth")
        return _print_property_string(parsed, first=("name",))

    def _free_volumes(self, vmid: int, log: TaskLog | None) -> None:
        for storage in self.node.storages.values():
            for volid in [v for v in storage.volumes if f":vm-{vmid}-" in v or f":subvol-{vmid}-" in v]:
                del storage.volumes[volid]
                if log is not None:
                    kind = "Logical volume" if storage.type.startswith("lvm") else "Volume"
                    log(f'  {kind} "{volid.split(":", 1)[1]}" successfully removed.')

    def _allocate_disk(self, log: TaskLog, vmid: int, index: int, spec: str) -> str:
        """Allocate ``storage:size`` (GiB) as ``storage:vm-<vmid>-disk-<index>``; returns the config value."""
        options = parse_property_string(spec, {"volume": {"default_key": 1}})
        storage_id, _, size_spec = options.pop("volume", "").partition(":")
        if storage_id.startswith("/"):
            # A bind mount (root@pam only, checked at request time): nothing to allocate.
            return spec
        storage = self.node.storages.get(storage_id)
        if storage is None:
            raise TaskError(f"unable to create CT {vmid} - storage '{storage_id}' does not exist")
        if "rootdir" not in storage.content:
            raise TaskError(
                f"unable to create CT {vmid} - storage '{storage_id}' does not support container directories"
            )
        size_gib = size_spec if size_spec.replace(".", "", 1).isdigit() else "8"
        volname = f"vm-{vmid}-disk-{index}"
        storage.volumes[f"{storage_id}:{volname}"] = size_bytes(f"{size_gib}G")
        kind = "Logical volume" if storage.type.startswith("lvm") else "Volume"
        log(f'  {kind} "{volname}" created.')
        log(f"Creating filesystem with {size_bytes(size_gib + 'G') // 4096} 4k blocks and 524288 inodes")
        options.pop("size", None)
        rest = "".join(f",{k}={v}" for k, v in sorted(options.items()))
        return f"{storage_id}:{volname}{rest},size={size_gib}G"

    async def _create_body(
        self,
        log: TaskLog,
        guest: SimGuest,
        ostemplate: str,
        disks: Mapping[str, str],
        start: bool,
        ssh_keys: str | None,
    ) -> None:
        vmid = guest.vmid
        template_storage = self.node.storages[ostemplate.partition(":")[0]]
        if ostemplate not in template_storage.volumes:
            raise TaskError(f"unable to create CT {vmid} - volume '{ostemplate}' does not exist")
        allocated = {
            key: self._allocate_disk(log, vmid, index, spec) for index, (key, spec) in enumerate(disks.items())
        }
        archive = f"/var/lib/vz/template/cache/{ostemplate.split('/', 1)[-1]}"
        log(f"extracting archive '{archive}'")
        try:
            guest.rootfs = await asyncio.to_thread(
                sandbox.create_rootfs, self.node.data_dir, vmid, ostemplate, hostname=guest.config.get("hostname")
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise TaskError(f"unable to create CT {vmid} - {exc}") from exc
        if ssh_keys:
            await asyncio.to_thread(_install_ssh_keys, guest.rootfs, ssh_keys)
        log(f"Total bytes read: 528793600 (505MiB, {120 + vmid % 50}MiB/s)")
        log(f"Detected container architecture: {guest.config.get('arch', 'amd64')}")
        log("Creating SSH host key 'ssh_host_ed25519_key' - this may take some time ...")
        digest = hashlib.sha256(f"{self.node.name}/{vmid}".encode()).hexdigest()[:43]
        log(f"done: SHA256:{digest} root@{guest.config.get('hostname', f'CT{vmid}')}")
        guest.config.update(allocated)
        guest.lock = None
        if start:
            self._power_on(guest, log)

    def _power_on(self, guest: SimGuest, log: TaskLog) -> None:
        for key, value in sorted(guest.config.items()):
            if key.startswith("net") and key[3:].isdigit():
                bridge = parse_property_string(value, {}).get("bridge")
                if bridge is not None and bridge not in self.node.bridges:
                    raise TaskError(f"bridge '{bridge}' does not exist")
        guest.status = "running"
        guest.started_at = time.time()
        guest.ipv4, guest.ipv6 = guest_addresses(self.node, guest)
        if guest.rootfs is not None:
            sandbox.set_network(guest.rootfs, guest.ipv4, guest.ipv6)
        log(f"starting CT {guest.vmid}")

    async def lxc_config(self, ctx: Ctx) -> Any:
        guest = self._guest(ctx.vmid)
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        data: dict[str, Any] = dict(guest.config)
        if guest.lock is not None:
            data["lock"] = guest.lock
        data["digest"] = _digest(guest.config)
        for key in ("memory", "swap", "cores", "cpuunits", "onboot", "unprivileged", "protection", "tty"):
            if key in data and data[key].isdigit():
                data[key] = int(data[key])
        return data

    async def lxc_config_update(self, ctx: Ctx) -> Any:
        guest = self._guest(ctx.vmid)
        params = {k: v for k, v in ctx.params.items() if k not in ("node", "vmid")}
        self._check_modify_perm(
            ctx.who, ctx.vmid, {k: v for k, v in params.items() if k not in ("delete", "digest", "revert")}, guest
        )
        self._check_lock(guest)
        if "digest" in params and params["digest"] != _digest(guest.config):
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
        for key in ("ostype", "arch", "unprivileged"):
            if key in params and params[key] != guest.config.get(key):
                raise param_error(
                    {
                        key: "option is read-only"
                        if key != "unprivileged"
                        else "unable to modify read-only option: 'unprivileged'"
                    }
                )
        for key in filter(None, (k.strip() for k in params.get("delete", "").replace(";", ",").split(","))):
            if key in ("rootfs", "hostname", "ostype", "arch"):
                raise param_error({"delete": f"unable to delete required option '{key}'"})
            guest.config.pop(key, None)
        for key, value in params.items():
            if key in ("delete", "digest", "revert"):
                continue
            if key.startswith("net") and key[3:].isdigit():
                value = self._normalize_net(ctx.vmid, key, value)
            elif key == "features":
                value = _print_property_string(_features(value))
            guest.config[key] = value
        return None

    async def lxc_status_index(self, ctx: Ctx) -> Any:
        self._guest(ctx.vmid)
        return [{"subdir": s} for s in ("current", "start", "stop", "shutdown", "reboot", "suspend", "resume")]

    async def lxc_status(self, ctx: Ctx) -> Any:
        guest = self._guest(ctx.vmid)
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        entry = self._guest_entry(guest)
        entry["ha"] = {"managed": 0}
        if guest.status == "running":
            entry["pid"] = 100000 + guest.vmid
        return entry

    def _power_precheck(self, ctx: Ctx) -> SimGuest:
        guest = self._guest(ctx.vmid)
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.PowerMgmt"])
        if not ctx.flag("skiplock"):
            self._check_lock(guest)
        elif not ctx.who.is_root:
            raise ApiError(403, "Permission check failed (option 'skiplock' is only allowed for root@pam)")
        return guest

    async def lxc_start(self, ctx: Ctx) -> Any:
        guest = self._power_precheck(ctx)
        if guest.status == "running":
            raise ApiError(500, f"CT {ctx.vmid} already running")

        async def body(log: TaskLog) -> None:
            if guest.status != "running":
                self._power_on(guest, log)

        return self.tasks.start("vzstart", ctx.vmid, ctx.who.authid, body)

    def _power_off(self, guest: SimGuest) -> None:
        guest.status = "stopped"
        guest.started_at = None
        guest.ipv4 = guest.ipv6 = None

    async def lxc_stop(self, ctx: Ctx) -> Any:
        guest = self._power_precheck(ctx)
        if guest.status != "running":
            raise ApiError(500, f"CT {ctx.vmid} not running")

        async def body(log: TaskLog) -> None:
            self._power_off(guest)

        return self.tasks.start("vzstop", ctx.vmid, ctx.who.authid, body)

    async def lxc_shutdown(self, ctx: Ctx) -> Any:
        guest = self._power_precheck(ctx)
        if guest.status != "running":
            raise ApiError(500, f"CT {ctx.vmid} not running")

        timeout = ctx.integer("timeout", 60) or 0
        force = ctx.flag("forceStop")

        async def body(log: TaskLog) -> None:
            if guest.vmid in self.faults.ignoring_shutdown:
                # The container ignores the request: lxc-stop waits out the timeout, then kills or gives up.
                await asyncio.sleep(timeout)
                if not force:
                    raise TaskError(
                        f"command 'lxc-stop -n {guest.vmid} --nokill --timeout {timeout}' failed: exit code 1"
                    )
                log(f"container {guest.vmid} did not shut down within {timeout} seconds, killing it")
            self._power_off(guest)

        return self.tasks.start("vzshutdown", ctx.vmid, ctx.who.authid, body)

    async def lxc_reboot(self, ctx: Ctx) -> Any:
        guest = self._power_precheck(ctx)
        if guest.status != "running":
            raise ApiError(500, f"VM {ctx.vmid} not running")

        async def body(log: TaskLog) -> None:
            self._power_off(guest)
            self._power_on(guest, log)

        return self.tasks.start("vzreboot", ctx.vmid, ctx.who.authid, body)

    async def lxc_delete(self, ctx: Ctx) -> Any:
        vmid = ctx.vmid
        guest = self._guest(vmid)
        self.access.check(ctx.who, f"/vms/{vmid}", ["VM.Allocate"])
        self._check_lock(guest)
        if guest.config.get("protection") == "1":
            raise ApiError(500, f"can't remove CT {vmid} - protection mode enabled")
        force = ctx.flag("force")
        if guest.status == "running" and not force:
            raise ApiError(500, f"CT {vmid} is running - destroy failed")
        purge = ctx.flag("purge")

        async def body(log: TaskLog) -> None:
            if guest.status == "running":
                log(f"stopping CT {vmid} (force)")
                self._power_off(guest)
            guest.lock = "destroyed"
            self._free_volumes(vmid, log)
            if guest.rootfs is not None:
                await asyncio.to_thread(sandbox.destroy_rootfs, guest.rootfs)
                guest.rootfs = None
            if purge:
                log(f"purging CT {vmid} from related configurations..")
            if self.node.guests.get(vmid) is guest:
                del self.node.guests[vmid]

        def restore() -> None:
            if guest.lock == "destroyed":
                guest.lock = None

        return self.tasks.start("vzdestroy", vmid, ctx.who.authid, body, on_failure=restore)

    async def lxc_interfaces(self, ctx: Ctx) -> Any:
        guest = self._guest(ctx.vmid)
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        if guest.status != "running":
            raise ApiError(500, f"CT {ctx.vmid} not running")
        result: list[dict[str, Any]] = [
            {"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"}
        ]
        for key in sorted(k for k in guest.config if k.startswith("net") and k[3:].isdigit()):
            net = parse_property_string(guest.config[key], {})
            entry = {"name": net.get("name", "eth0"), "hwaddr": net.get("hwaddr", "").lower()}
            if key == "net0":
                if guest.ipv4:
                    entry["inet"] = guest.ipv4
                if guest.ipv6:
                    entry["inet6"] = guest.ipv6
            result.append(entry)
        return result

    # ------------------------------------------------------------------ tasks

    def _task(self, ctx: Ctx) -> SimTask:
        upid = ctx.path["upid"]
        try:
            Upid(upid)
        except ValueError as exc:
            raise ApiError(500, f"unable to parse worker upid '{upid}'") from exc
        task = self.node.tasks.get(upid)
        if task is None:
            raise ApiError(500, "no such task")
        who = ctx.who
        if task.user not in (who.authid, who.userid):
            self.access.check(who, f"/nodes/{self.node.name}", ["Sys.Audit"])
        return task

    async def task_list(self, ctx: Ctx) -> Any:
        result = []
        vmid, type_filter = ctx.params.get("vmid"), ctx.params.get("typefilter")
        running_only = ctx.params.get("source") == "active"
        for task in sorted(self.node.tasks.values(), key=lambda t: t.starttime, reverse=True):
            if (vmid is not None and task.id != vmid) or (type_filter is not None and task.type != type_filter):
                continue
            if running_only and task.status != "running":
                continue
            if task.user not in (ctx.who.authid, ctx.who.userid) and "Sys.Audit" not in self.access.privileges(
                ctx.who, f"/nodes/{self.node.name}"
            ):
                continue
            entry = task_status(task)
            if task.endtime is not None:
                entry["endtime"] = task.endtime
                entry["status"] = task.exitstatus
            result.append(entry)
        limit = ctx.integer("limit", 50) or 50
        return result[int(ctx.params.get("start", "0")) :][:limit]

    async def task_status(self, ctx: Ctx) -> Any:
        return task_status(self._task(ctx))

    async def task_log(self, ctx: Ctx) -> Any:
        task = self._task(ctx)
        start = ctx.integer("start", 0) or 0
        limit = ctx.integer("limit", 50) or 50
        lines = [{"n": i + 1, "t": line} for i, line in enumerate(task.log)][start : start + limit]
        return _WithTotal(lines, len(task.log))


@dataclass
class _WithTotal:
    """A list answer that also carries PVE's top-level ``total`` (task logs)."""

    data: list[dict[str, Any]]
    total: int


# Create parameters that are instructions, not config keys.
_CREATE_ONLY = {
    "vmid",
    "node",
    "ostemplate",
    "password",
    "ssh-public-keys",
    "storage",
    "start",
    "force",
    "restore",
    "unique",
    "pool",
    "bwlimit",
    "ignore-unpack-errors",
}
_CONFIG_KEYS = {
    "arch",
    "cmode",
    "console",
    "cores",
    "cpulimit",
    "cpuunits",
    "debug",
    "description",
    "hookscript",
    "hostname",
    "lock",
    "memory",
    "nameserver",
    "onboot",
    "ostype",
    "protection",
    "searchdomain",
    "startup",
    "swap",
    "tags",
    "template",
    "timezone",
    "tty",
    "unprivileged",
}


def guest_addresses(node: SimNode, guest: SimGuest) -> tuple[str | None, str | None]:
    """The IPv4 (CIDR) and IPv6 addresses a running guest reports: static ones from ``net0``, a DHCP lease
    from the bridge's subnet, and the link-local address derived from the MAC."""
    net0 = guest.config.get("net0")
    if net0 is None:
        return None, None
    net = parse_property_string(net0, {})
    ip = net.get("ip")
    ipv4: str | None
    if ip in (None, "manual"):
        ipv4 = None
    elif ip == "dhcp":
        bridge = node.bridges.get(net.get("bridge", ""))
        network = ipaddress.ip_interface(bridge.cidr).network if bridge and bridge.cidr else None
        base = network if network is not None else ipaddress.ip_network("10.0.0.0/24")
        hosts = list(base.hosts())
        ipv4 = f"{hosts[(guest.vmid % (len(hosts) - 20)) + 19]}/{base.prefixlen}"
    else:
        ipv4 = ip
    ip6 = net.get("ip6")
    if ip6 not in (None, "auto", "dhcp", "manual"):
        return ipv4, ip6
    return ipv4, _link_local(net.get("hwaddr", _mac_for(net0)))


def _indexed(key: str, prefix: str) -> bool:
    return key.startswith(prefix) and key[len(prefix) :].isdigit()


def _install_ssh_keys(rootfs: Path, keys: str) -> None:
    """What PVE does with ``ssh-public-keys`` at create: root's authorized_keys inside the container."""
    ssh_dir = rootfs / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = ssh_dir / "authorized_keys"
    target.write_text(keys.rstrip("\n") + "\n")
    target.chmod(0o600)
    if sandbox.confinement() == "subuid":
        for path in (ssh_dir, target):
            os.lchown(path, sandbox.CONTAINER_ROOT_ID, sandbox.CONTAINER_ROOT_ID)


def _features(value: str) -> dict[str, str]:
    return parse_property_string(value, {}) if value else {}


def _ostype_for(ostemplate: str) -> str:
    name = ostemplate.rsplit("/", 1)[-1].lower()
    for ostype in ("debian", "ubuntu", "alpine", "centos", "fedora", "archlinux", "devuan", "opensuse", "gentoo"):
        if name.startswith(ostype):
            return ostype
    return "unmanaged"


def _mac_for(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return _MAC_PREFIX + "".join(f":{b:02X}" for b in digest[:3])


def _link_local(mac: str) -> str:
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    groups = [f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return f"fe80::{':'.join(groups)}/64"


def _digest(config: Mapping[str, str]) -> str:
    text = "".join(f"{k}: {v}\n" for k, v in sorted(config.items()))
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - PVE's config digest is SHA-1


__all__ = ["ApiError", "NodeApi", "RecordedRequest", "RouteMatch"]
