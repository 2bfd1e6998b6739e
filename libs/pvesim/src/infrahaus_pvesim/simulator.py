"""The simulator: one or more standalone PVE nodes, each with an HTTPS API and an SSH host.

sim = Simulator(SimulatorConfig(data_dir=tmp_path))
await sim.start()
node = sim.node("pve")   # node.api_url, node.fingerprint, node.ssh_port, node.faults, node.requests
await sim.stop()
"""

import asyncio
import contextlib
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from infrahaus_pvesim import persist
from infrahaus_pvesim.access import AccessControl
from infrahaus_pvesim.config import SimNodeConfig, SimulatorConfig
from infrahaus_pvesim.faults import NodeFaults
from infrahaus_pvesim.http import NodeApi, RecordedRequest, guest_addresses
from infrahaus_pvesim.ssh import SshHost
from infrahaus_pvesim.state import SimBridge, SimGuest, SimNode, SimStorage
from infrahaus_pvesim.tasks import TaskRunner
from infrahaus_pvesim.tls import NodeCertificate, ensure_node_certificate, server_context

_GIB = 1024**3


class _Silent(asyncio.Protocol):
    """A connection that is accepted and never answered (blackhole fault)."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def populate_node(node: SimNode, templates: tuple[str, ...], guests: int) -> None:
    """The demo layout (the README's walk-through): storages ``local`` (vztmpl, iso, backup) and ``local-lvm``
    (rootdir, images), bridge ``vmbr0``, and ``guests`` pre-populated guests (every fourth a QEMU VM, every other one
    running)."""
    local = SimStorage(name="local", type="dir", content={"vztmpl", "iso", "backup"})
    for volid in templates:
        storage = volid.partition(":")[0]
        if storage == "local":
            local.volumes[volid] = 129_863_680 + 1_000_003 * len(local.volumes)
    node.storages = {
        "local": local,
        "local-lvm": SimStorage(
            name="local-lvm", type="lvmthin", content={"rootdir", "images"}, total=400 * _GIB, used=0
        ),
    }
    node.bridges = {"vmbr0": SimBridge(iface="vmbr0", cidr="192.168.100.2/24")}
    for index in range(guests):
        vmid = 100 + index
        running = index % 2 == 0
        if index % 4 == 3:
            config = {
                "name": f"vm-{vmid}",
                "memory": "2048",
                "cores": "2",
                "ostype": "l26",
                "scsi0": f"local-lvm:vm-{vmid}-disk-0,size=32G",
                "net0": f"virtio=BC:24:11:{vmid >> 8 & 0xFF:02X}:{vmid & 0xFF:02X}:01,bridge=vmbr0",
            }
            node.guests[vmid] = SimGuest(
                vmid=vmid, type="qemu", config=config, status="running" if running else "stopped"
            )
            node.storages["local-lvm"].volumes[f"local-lvm:vm-{vmid}-disk-0"] = 32 * _GIB
            continue
        mac = f"BC:24:11:{vmid >> 8 & 0xFF:02X}:{vmid & 0xFF:02X}:00"
        config = {
            "arch": "amd64",
            "hostname": f"ct-{vmid}",
            "memory": "512",
            "swap": "512",
            "cores": "1",
            "ostype": "debian",
            "unprivileged": "1",
            "features": "nesting=1",
            "rootfs": f"local-lvm:vm-{vmid}-disk-0,size=8G",
            "net0": f"name=eth0,bridge=vmbr0,hwaddr={mac},ip=dhcp,type=veth",
        }
        guest = SimGuest(vmid=vmid, type="lxc", config=config, status="running" if running else "stopped")
        if running:
            guest.started_at = time.time()
            guest.ipv4, guest.ipv6 = guest_addresses(node, guest)
        node.guests[vmid] = guest
        node.storages["local-lvm"].volumes[f"local-lvm:vm-{vmid}-disk-0"] = 8 * _GIB


class RunningNode:
    """A started node: its API URL and fingerprint, SSH port and host key, state, faults and request log."""

    def __init__(self, config: SimulatorConfig, node_config: SimNodeConfig, access: AccessControl) -> None:
        self.name = node_config.name
        self._config = config
        self._node_config = node_config
        self.state = SimNode(name=node_config.name, data_dir=Path(config.data_dir) / node_config.name)
        self.faults = NodeFaults(self.state, latency=node_config.latency)
        self.tasks = TaskRunner(self.state, self.faults, config.task_duration, config.config_lock_timeout)
        self._background: set[asyncio.Task[None]] = set()
        self.faults.on_hold_config_lock(self._hold_config_lock)
        self.certificate: NodeCertificate = ensure_node_certificate(
            Path(config.data_dir), node_config.name, [config.bind]
        )
        self.api = NodeApi(self.state, self.faults, access, self.tasks, config, self.certificate.fingerprint)
        self.api_port = node_config.api_port
        self.ssh_port = node_config.ssh_port
        self._runner: web.AppRunner | None = None
        self._server: asyncio.base_events.Server | None = None
        self._reopening: asyncio.Task[None] | None = None
        self._saved = ""
        self.ssh = SshHost(
            self.state,
            host=config.bind,
            port=node_config.ssh_port,
            host_key_path=self.state.data_dir / "ssh_host_ed25519_key",
            users=dict(node_config.ssh_users),
            faults=self.faults,
            tasks=self.tasks,
        )

    def _spawn(self, coro: "Coroutine[Any, Any, None]") -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _hold_config_lock(self, vmid: int, seconds: float) -> None:
        self._spawn(self.tasks.hold_config_lock(vmid, seconds))

    def broadcast_status(self) -> None:
        """What pvestatd does every 10 s: publish the guests' status for /cluster/resources (when modelled)."""
        if self.state.rrd is not None:
            self.state.rrd = {vmid: guest.status for vmid, guest in self.state.guests.items()}

    async def _broadcast_status(self, interval: float) -> None:
        while True:
            self.broadcast_status()
            await asyncio.sleep(interval)

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the node's TLS certificate, ``AB:CD:..``."""
        return self.certificate.fingerprint

    @property
    def certificate_pem(self) -> str:
        return self.certificate.pem

    @property
    def api_url(self) -> str:
        host = f"[{self._config.bind}]" if ":" in self._config.bind else self._config.bind
        return f"https://{host}:{self.api_port}"

    @property
    def ssh_host_key(self) -> str:
        """The SSH host's public key as an OpenSSH line (to pin)."""
        key: str = self.ssh.public_key
        return key

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.api.requests

    async def start(self) -> None:
        self.state.data_dir.mkdir(parents=True, exist_ok=True)
        populate_node(self.state, self._config.templates, self._node_config.guests)
        self.state.memory_total = self._node_config.memory
        for bridge in self._node_config.extra_bridges:
            self.state.bridges[bridge] = SimBridge(iface=bridge)
        if self._config.persist:
            if persist.load(self.state):
                self.tasks.continue_numbering()
            self._saved = ""
            self._spawn(self._keep_saving(self._config.persist_interval))
        self._runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        self._ssl = server_context(self.certificate)
        sock = _bind(self._config.bind, self.api_port)
        self.api_port = sock.getsockname()[1]
        await self._serve(sock)
        self.ssh_port = await self.ssh.start()
        self.faults.on_reachability_change(self._reachability_changed)
        if self._config.status_interval > 0:
            self.state.rrd = {}
            self._spawn(self._broadcast_status(self._config.status_interval))

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, sock=sock, ssl=self._ssl)

    def _protocol(self) -> asyncio.BaseProtocol:
        if self.faults.blackhole or self._runner is None:
            return _Silent()
        handler: asyncio.BaseProtocol = self._runner.server()  # type: ignore[misc]
        return handler

    def _reachability_changed(self, unreachable: bool) -> None:
        # Synchronous on purpose: the port refuses connections the moment the fault is set.
        if unreachable:
            if self._server is not None:
                self._server.close()
                self._server = None
            if self._runner is not None and self._runner.server is not None:
                for connection in list(self._runner.server.connections):
                    connection.force_close()
        else:
            sock = _bind(self._config.bind, self.api_port)
            self._reopening = asyncio.get_running_loop().create_task(self._serve(sock))

    async def _keep_saving(self, interval: float) -> None:
        while True:
            self._save()
            await asyncio.sleep(interval)

    def _save(self) -> None:
        text = persist.dump(self.state)
        if text != self._saved:
            persist.save(self.state, text)
            self._saved = text

    async def stop(self) -> None:
        if self._config.persist:
            # Before the task runner stops: tasks still running are saved as running (ended as killed on load).
            self._save()
        await self.ssh.stop()
        await self.tasks.aclose()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._reopening is not None:
            with contextlib.suppress(Exception):
                await self._reopening
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class Simulator:
    """A fleet of simulated Proxmox VE nodes sharing users and tokens."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.access = AccessControl(config)
        names = [n.name for n in config.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique: {names}")
        self._nodes = {n.name: RunningNode(config, n, self.access) for n in config.nodes}

    async def start(self) -> None:
        """Start every node's HTTPS API and SSH host; ports chosen as 0 are known afterwards."""
        started: list[RunningNode] = []
        try:
            for node in self._nodes.values():
                await node.start()
                started.append(node)
        except BaseException:
            for node in started:
                await node.stop()
            raise

    async def stop(self) -> None:
        for node in self._nodes.values():
            await node.stop()

    def node(self, name: str = "pve") -> RunningNode:
        return self._nodes[name]

    @property
    def nodes(self) -> list[RunningNode]:
        return list(self._nodes.values())

    async def __aenter__(self) -> "Simulator":
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


__all__ = ["RunningNode", "Simulator", "populate_node"]
