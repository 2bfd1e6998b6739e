"""In-memory state of simulated Proxmox VE nodes, shared by the HTTP API and the SSH host.

One `SimNode` is one standalone PVE host: its own HTTPS port, SSH port, latency and guests.
The HTTP side (``http/``) owns guest configs, tasks and locks; the SSH side (``ssh.py``,
``sandbox.py``) owns each container's real directory tree. Both mutate the same objects on
the same event loop, so no locking is needed.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

GuestType = Literal["lxc", "qemu"]
GuestStatus = Literal["running", "stopped"]


@dataclass
class SimSnapshot:
    """A snapshot section of a container's config (``[<name>]``) and the copy of its volumes' contents.

    `config` is the copy of the container's config taken at the time (pve-guest-common AbstractConfig
    ``__snapshot_copy_config``: everything but the lock, description, digest and unused volumes), `parent` the
    snapshot it descends from, `snapstate` ``prepare``/``delete`` while a task works on it. `tree` is a real copy of
    the container's directory tree, so a rollback restores the files.
    """

    name: str
    config: dict[str, str]
    snaptime: int
    description: str = ""
    parent: str | None = None
    snapstate: str | None = None
    tree: Path | None = None
    # Creation order on the node (ZFS rolls back only to a volume's most recent snapshot).
    seq: int = 0


@dataclass
class SimGuest:
    """A guest on a node. QEMU guests exist only so VMIDs are shared the way Proxmox shares them."""

    vmid: int
    type: GuestType
    # The guest's config as Proxmox stores it: string keys and values ("cores": "2",
    # "net0": "name=eth0,bridge=vmbr0,ip=dhcp", "features": "nesting=1", "rootfs": "local-lvm:vm-100-disk-0,size=8G").
    # The `lock` key lives in `lock`, never here.
    config: dict[str, str]
    status: GuestStatus = "stopped"
    lock: str | None = None
    # The `[pve:pending]` section: values waiting for the next start, and keys whose deletion waits.
    pending: dict[str, str] = field(default_factory=dict)
    pending_delete: set[str] = field(default_factory=set)
    # True from the create call until the create task's first full config write: the file then holds only
    # `lock: create` (pve-container API2/LXC.pm create_vm, AbstractConfig create_and_lock_config).
    creating: bool = False
    # Real directory tree of an LXC guest once its create task has populated it.
    rootfs: Path | None = None
    started_at: float | None = None
    # IPv4/IPv6 addresses the guest reports through /lxc/{vmid}/interfaces once running.
    ipv4: str | None = None
    ipv6: str | None = None
    # time.monotonic() when a DHCP guest gets its IPv4 lease after a start (None: it has it, or has no DHCP).
    lease_at: float | None = None
    # Process groups of commands running inside it (`pct exec`): a stopping container takes them with it.
    processes: set[int] = field(default_factory=set)
    # `[<snapname>]` sections, in creation order.
    snapshots: dict[str, SimSnapshot] = field(default_factory=dict)

    def visible_config(self) -> dict[str, str]:
        """The config as the file has it now (only the lock while a create task has not written it yet)."""
        return {} if self.creating else self.config

    @property
    def leased(self) -> bool:
        return self.lease_at is None or time.monotonic() >= self.lease_at

    @property
    def uptime(self) -> int:
        return int(time.time() - self.started_at) if self.started_at and self.status == "running" else 0


@dataclass
class SimStorage:
    name: str
    type: str  # "dir", "lvmthin", ...
    content: set[str]  # {"vztmpl", "iso", "backup"} or {"rootdir", "images"}
    total: int = 100 * 1024**3
    used: int = 10 * 1024**3
    # volid -> size in bytes for vztmpl content, e.g. "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    volumes: dict[str, int] = field(default_factory=dict)


@dataclass
class SimBridge:
    iface: str
    cidr: str | None = None
    active: bool = True


@dataclass
class SimTask:
    upid: str
    node: str
    type: str  # "vzcreate", "vzstart", "vzstop", "vzshutdown", "vzreboot", "vzdestroy"
    id: str  # the vmid as a string
    user: str  # the authid that started it: "root@pam!infrahaus" or "root@pam"
    starttime: int
    status: Literal["running", "stopped"] = "running"
    exitstatus: str | None = None  # "OK", "WARNINGS: 1", or the error message
    log: list[str] = field(default_factory=list)
    endtime: int | None = None
    # Order in which tasks started / ended on this node (the task index is appended to when a task ends).
    started_seq: int = 0
    ended_seq: int = 0


@dataclass
class SimNode:
    """One simulated PVE host: its guests (LXC and QEMU share the VMID space), storages, bridges and tasks."""

    name: str
    # Per-node directory: TLS certificate, SSH host key, and the container trees under ``ct/``.
    data_dir: Path
    guests: dict[int, SimGuest] = field(default_factory=dict)
    storages: dict[str, SimStorage] = field(default_factory=dict)
    bridges: dict[str, SimBridge] = field(default_factory=dict)
    tasks: dict[str, SimTask] = field(default_factory=dict)
    booted_at: float = field(default_factory=time.time)
    cpus: int = 8
    memory_total: int = 32 * 1024**3
    # What pvestatd last broadcast (vmid -> status) when the simulator models its 10 s cache; None = always live.
    rrd: dict[int, str] | None = None

    def config_path(self, vmid: int, type: GuestType = "lxc") -> str:
        """The guest's config file as Proxmox names it in error messages (relative to /etc/pve)."""
        kind = "lxc" if type == "lxc" else "qemu-server"
        return f"nodes/{self.name}/{kind}/{vmid}.conf"

    @property
    def uptime(self) -> int:
        return int(time.time() - self.booted_at)
