"""msgspec structs for what Proxmox returns and what the client sends.

Answers are decoded with `parsing.lenient_convert`: unknown fields are ignored, enum-like
fields are plain `str` (a value added by a newer Proxmox never breaks a list), and almost every
field has a default because Proxmox omits whatever does not apply.
"""

import re
from typing import Any

import msgspec

from infrahaus_proxmox.parsing import parse_bool, parse_disk_size, parse_property_string, split_tags


class Version(msgspec.Struct, kw_only=True):
    version: str
    release: str = ""
    repoid: str = ""


class Ticket(msgspec.Struct, kw_only=True):
    """A login ticket. The ticket and CSRF token are credentials: kept out of repr."""

    username: str
    ticket: str
    csrf_token: str

    def __repr__(self) -> str:
        return f"Ticket(username={self.username!r}, ticket='***', csrf_token='***')"


class PveUser(msgspec.Struct, kw_only=True):
    """One account of user.cfg as GET /access/users/{userid} shows it (only what infrahaus reads)."""

    enable: bool = True
    # Seconds since the epoch; 0: never expires.
    expire: int = 0

    def active(self, now: float) -> bool:
        """Whether Proxmox would let this account log in at `now` (AccessControl.pm check_user_enabled)."""
        return self.enable and (self.expire == 0 or self.expire >= now)


class NodeSummary(msgspec.Struct, kw_only=True):
    """One entry of GET /nodes. `status` is "online", "offline", "unknown" or whatever Proxmox adds."""

    node: str
    status: str = "unknown"
    cpu: float = 0.0
    maxcpu: int = 0
    mem: int = 0
    maxmem: int = 0
    disk: int = 0
    maxdisk: int = 0
    uptime: int = 0
    level: str = ""
    ssl_fingerprint: str | None = None

    @property
    def online(self) -> bool:
        return self.status == "online"


class MemoryUsage(msgspec.Struct, kw_only=True):
    total: int = 0
    used: int = 0
    free: int = 0
    available: int = 0


class DiskUsage(msgspec.Struct, kw_only=True):
    total: int = 0
    used: int = 0
    free: int = 0
    avail: int = 0


class CpuInfo(msgspec.Struct, kw_only=True):
    cpus: int = 0
    cores: int = 0
    sockets: int = 0
    model: str = ""


class NodeStatus(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/status."""

    cpu: float = 0.0
    wait: float = 0.0
    uptime: int = 0
    pveversion: str = ""
    kversion: str = ""
    loadavg: list[str] = []
    memory: MemoryUsage = msgspec.field(default_factory=MemoryUsage)
    swap: MemoryUsage = msgspec.field(default_factory=MemoryUsage)
    rootfs: DiskUsage = msgspec.field(default_factory=DiskUsage)
    cpuinfo: CpuInfo = msgspec.field(default_factory=CpuInfo)


class NetworkInterface(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/network entry (bridges, bonds, ...)."""

    iface: str
    type: str = "unknown"
    active: bool = False
    autostart: bool = False
    method: str | None = None
    method6: str | None = None
    cidr: str | None = None
    address: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    cidr6: str | None = None
    address6: str | None = None
    gateway6: str | None = None
    bridge_ports: str | None = None
    bridge_vlan_aware: bool = False
    mtu: int | None = None
    comments: str | None = None
    families: list[str] = []


class Storage(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/storage entry; `content` is split from Proxmox's "vztmpl,iso,backup"."""

    storage: str
    type: str = ""
    content: list[str] = []
    total: int = 0
    used: int = 0
    avail: int = 0
    used_fraction: float = 0.0
    active: bool = False
    enabled: bool = True
    shared: bool = False


class StorageVolume(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/storage/{storage}/content entry."""

    volid: str
    format: str = ""
    size: int = 0
    content: str = ""
    ctime: int | None = None
    vmid: int | None = None
    used: int | None = None
    notes: str | None = None


class ClusterResource(msgspec.Struct, kw_only=True):
    """GET /cluster/resources entry; which fields are set depends on `type` (lxc, qemu, node, storage...)."""

    id: str
    type: str
    node: str | None = None
    status: str | None = None
    name: str | None = None
    vmid: int | None = None
    storage: str | None = None
    content: str | None = None
    plugintype: str | None = None
    pool: str | None = None
    cpu: float = 0.0
    maxcpu: float = 0.0
    mem: int = 0
    maxmem: int = 0
    disk: int = 0
    maxdisk: int = 0
    uptime: int = 0
    template: bool = False
    tags: str | None = None
    lock: str | None = None
    hastate: str | None = None

    @property
    def tag_list(self) -> list[str]:
        return split_tags(self.tags)


class LxcSummary(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/lxc entry. `status` is normally "running" or "stopped", kept as str."""

    vmid: int
    status: str = "unknown"
    name: str | None = None
    cpu: float = 0.0
    cpus: float = 0.0
    mem: int = 0
    maxmem: int = 0
    swap: int = 0
    maxswap: int = 0
    disk: int = 0
    maxdisk: int = 0
    netin: int = 0
    netout: int = 0
    uptime: int = 0
    lock: str | None = None
    tags: str | None = None
    template: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def tag_list(self) -> list[str]:
        return split_tags(self.tags)


class LxcStatus(LxcSummary, kw_only=True):
    """GET /nodes/{node}/lxc/{vmid}/status/current."""


class LxcAddress(msgspec.Struct, kw_only=True):
    """One address of an interface (``ip-addresses`` entry)."""

    ip_address: str = msgspec.field(name="ip-address")
    ip_address_type: str = msgspec.field(name="ip-address-type", default="")
    prefix: int | None = None


class LxcInterface(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/lxc/{vmid}/interfaces entry (pve-container LXC.pm get_interfaces, from ``ip --json a``);
    `inet` like "10.0.0.5/24" (the last IPv4 address; `addresses` has all). An interface whose network is not up
    yet (DHCP pending) has no `inet`."""

    name: str
    hwaddr: str = ""
    inet: str | None = None
    inet6: str | None = None
    addresses: list[LxcAddress] = msgspec.field(name="ip-addresses", default_factory=list)


class LxcPending(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/lxc/{vmid}/pending entry: a config key, its current value, and a value (or deletion) that
    waits for the next start."""

    key: str
    value: str | None = None
    pending: str | None = None
    delete: int = 0

    @property
    def waiting(self) -> bool:
        return self.pending is not None or bool(self.delete)


class TaskStatus(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/tasks/{upid}/status."""

    upid: str
    node: str = ""
    status: str = "running"
    exitstatus: str | None = None
    type: str = ""
    id: str = ""
    user: str = ""
    tokenid: str | None = None
    pid: int = 0
    pstart: int = 0
    starttime: int = 0
    endtime: int | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def succeeded(self) -> bool:
        """Finished with "OK" or "WARNINGS: n" (Proxmox counts warnings as success)."""
        return not self.running and self.exitstatus is not None and _task_ok(self.exitstatus)


class TaskEntry(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/tasks entry: `status` is the exit status of a finished task, ``RUNNING`` for an active
    one (listed only with ``source=active|all``)."""

    upid: str
    node: str = ""
    type: str = ""
    id: str = ""
    user: str = ""
    tokenid: str | None = None
    starttime: int = 0
    endtime: int | None = None
    status: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    @property
    def succeeded(self) -> bool:
        return not self.running and self.status is not None and _task_ok(self.status)

    @property
    def authid(self) -> str:
        """Who started it: ``user!tokenid`` for a token, else the user."""
        return f"{self.user}!{self.tokenid}" if self.tokenid else self.user


def _task_ok(exitstatus: str) -> bool:
    return exitstatus == "OK" or exitstatus.startswith("WARNINGS")


def _render_bool(value: bool) -> str:
    return "1" if value else "0"


_PROPERTY_BREAKERS = re.compile(r"[,=;\s\x00-\x1f\x7f]")


def property_value(key: str, value: str) -> str:
    """A value for one key of a Proxmox property string (``net0``, ``features``, ``rootfs``); ValueError when it
    holds a character that would end the value or start another key (``,`` ``=`` ``;``, whitespace, control)."""
    if not value or _PROPERTY_BREAKERS.search(value):
        raise ValueError(f"invalid value for {key!r} in a Proxmox property string: {value!r:.80}")
    return value


class LxcNetwork(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One container NIC (the value of ``net0``, ``net1``...), parsed or to be rendered."""

    name: str
    bridge: str | None = None
    hwaddr: str | None = None
    ip: str | None = None
    gw: str | None = None
    ip6: str | None = None
    gw6: str | None = None
    tag: int | None = None
    firewall: bool | None = None
    mtu: int | None = None
    rate: float | None = None
    type: str | None = None

    @classmethod
    def parse(cls, value: str) -> "LxcNetwork":
        """Parse ``name=eth0,bridge=vmbr0,hwaddr=..,ip=dhcp,type=veth``; unknown keys are ignored."""
        props = parse_property_string(value)
        return cls(
            name=props.get("name", ""),
            bridge=props.get("bridge"),
            hwaddr=props.get("hwaddr"),
            ip=props.get("ip"),
            gw=props.get("gw"),
            ip6=props.get("ip6"),
            gw6=props.get("gw6"),
            tag=int(props["tag"]) if props.get("tag", "").isdigit() else None,
            firewall=parse_bool(props["firewall"]) if "firewall" in props else None,
            mtu=int(props["mtu"]) if props.get("mtu", "").isdigit() else None,
            rate=_float_or_none(props.get("rate")),
            type=props.get("type"),
        )

    def render(self) -> str:
        """The property string Proxmox expects for ``netN``."""
        parts = [f"name={property_value('name', self.name)}"]
        for key in ("bridge", "hwaddr", "ip", "gw", "ip6", "gw6", "tag", "mtu", "rate", "type"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={property_value(key, str(value))}")
        if self.firewall is not None:
            parts.append(f"firewall={_render_bool(self.firewall)}")
        return ",".join(parts)


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LxcFeatures(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``features`` option (``nesting=1,keyctl=1,mount=nfs;cifs``)."""

    nesting: bool = False
    keyctl: bool = False
    fuse: bool = False
    mknod: bool = False
    force_rw_sys: bool = False
    mount: list[str] = []

    @classmethod
    def parse(cls, value: str | None) -> "LxcFeatures":
        props = parse_property_string(value or "")
        return cls(
            nesting=parse_bool(props.get("nesting")),
            keyctl=parse_bool(props.get("keyctl")),
            fuse=parse_bool(props.get("fuse")),
            mknod=parse_bool(props.get("mknod")),
            force_rw_sys=parse_bool(props.get("force_rw_sys")),
            mount=[fs for fs in props.get("mount", "").split(";") if fs],
        )

    def render(self) -> str:
        """Only enabled features are listed; an empty string means none."""
        parts = [f"{name}=1" for name in ("nesting", "keyctl", "fuse", "mknod", "force_rw_sys") if getattr(self, name)]
        if self.mount:
            parts.append("mount=" + ";".join(property_value("mount", fs) for fs in self.mount))
        return ",".join(parts)


class LxcRootfs(msgspec.Struct, kw_only=True):
    """The ``rootfs`` option: ``local-lvm:vm-100-disk-0,size=8G``."""

    volume: str
    storage: str
    size: str | None = None
    size_bytes: int | None = None
    options: dict[str, str] = {}

    @classmethod
    def parse(cls, value: str) -> "LxcRootfs":
        props = parse_property_string(value, default_key="volume")
        volume = props.pop("volume", "")
        size = props.pop("size", None)
        return cls(
            volume=volume,
            storage=volume.split(":", 1)[0] if ":" in volume else "",
            size=size,
            size_bytes=parse_disk_size(size) if size else None,
            options=props,
        )


_MASK = "'***'"
_NET_KEY_RE = re.compile(r"^net(\d+)$")


class LxcConfig(msgspec.Struct, kw_only=True):
    """GET /nodes/{node}/lxc/{vmid}/config: every option as Proxmox's string, plus parsed views."""

    raw: dict[str, str]
    digest: str | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "LxcConfig":
        """Build from the answer's ``data``; scalars become strings, raw ``lxc.*`` lists are skipped."""
        raw: dict[str, str] = {}
        for key, value in data.items():
            if isinstance(value, bool):
                raw[key] = _render_bool(value)
            elif isinstance(value, str | int | float):
                raw[key] = str(value)
        digest = raw.pop("digest", None)
        return cls(raw=raw, digest=digest)

    def get(self, key: str) -> str | None:
        return self.raw.get(key)

    def _int(self, key: str) -> int | None:
        value = self.raw.get(key)
        try:
            return int(float(value)) if value is not None else None
        except ValueError:
            return None

    @property
    def hostname(self) -> str | None:
        return self.raw.get("hostname")

    @property
    def cores(self) -> int | None:
        return self._int("cores")

    @property
    def memory(self) -> int | None:
        return self._int("memory")

    @property
    def swap(self) -> int | None:
        return self._int("swap")

    @property
    def onboot(self) -> bool:
        return parse_bool(self.raw.get("onboot"))

    @property
    def unprivileged(self) -> bool:
        return parse_bool(self.raw.get("unprivileged"))

    @property
    def lock(self) -> str | None:
        return self.raw.get("lock")

    @property
    def ostype(self) -> str | None:
        return self.raw.get("ostype")

    @property
    def description(self) -> str | None:
        return self.raw.get("description")

    @property
    def nameserver(self) -> str | None:
        return self.raw.get("nameserver")

    @property
    def searchdomain(self) -> str | None:
        return self.raw.get("searchdomain")

    @property
    def tags(self) -> list[str]:
        return split_tags(self.raw.get("tags"))

    @property
    def features(self) -> LxcFeatures:
        return LxcFeatures.parse(self.raw.get("features"))

    @property
    def rootfs(self) -> LxcRootfs | None:
        value = self.raw.get("rootfs")
        return LxcRootfs.parse(value) if value else None

    @property
    def networks(self) -> dict[str, LxcNetwork]:
        """``net0``, ``net1``... parsed, in index order."""
        keyed = [(int(m[1]), key) for key in self.raw if (m := _NET_KEY_RE.match(key))]
        return {key: LxcNetwork.parse(self.raw[key]) for _index, key in sorted(keyed)}


class LxcCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Parameters of POST /nodes/{node}/lxc; `to_params()` renders Proxmox's names and formats.

    `rootfs` is ``"<storage>:<size in GiB>"`` for a new volume (``"local-lvm:8"``). `networks`
    become ``net0``, ``net1``... in order. `password` (root password inside the container) never
    appears in repr.
    """

    vmid: int
    ostemplate: str
    rootfs: str
    hostname: str | None = None
    cores: int | None = None
    memory: int | None = None
    swap: int | None = None
    networks: list[LxcNetwork] = []
    nameserver: str | None = None
    searchdomain: str | None = None
    ssh_public_keys: str | None = None
    unprivileged: bool = True
    features: LxcFeatures | None = None
    onboot: bool | None = None
    tags: list[str] = []
    description: str | None = None
    password: str | None = None
    start: bool = False
    ostype: str | None = None
    arch: str | None = None
    pool: str | None = None
    timezone: str | None = None
    cpulimit: float | None = None
    cpuunits: int | None = None
    startup: str | None = None
    protection: bool | None = None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={_MASK if name == 'password' else repr(value)}"
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not None
        )
        return f"LxcCreate({shown})"

    def to_params(self) -> dict[str, str]:
        """Form fields for the create call: Proxmox names, booleans as 0/1, unset options left out."""
        params: dict[str, str] = {
            "vmid": str(self.vmid),
            "ostemplate": self.ostemplate,
            "rootfs": property_value("rootfs", self.rootfs),
            "unprivileged": _render_bool(self.unprivileged),
            "start": _render_bool(self.start),
        }
        optional: dict[str, str | int | float | None] = {
            "hostname": self.hostname,
            "cores": self.cores,
            "memory": self.memory,
            "swap": self.swap,
            "nameserver": self.nameserver,
            "searchdomain": self.searchdomain,
            "ssh-public-keys": self.ssh_public_keys,
            "description": self.description,
            "password": self.password,
            "ostype": self.ostype,
            "arch": self.arch,
            "pool": self.pool,
            "timezone": self.timezone,
            "cpulimit": self.cpulimit,
            "cpuunits": self.cpuunits,
            "startup": self.startup,
        }
        params.update({key: str(value) for key, value in optional.items() if value is not None})
        for index, network in enumerate(self.networks):
            params[f"net{index}"] = network.render()
        if self.features is not None and (features := self.features.render()):
            params["features"] = features
        if self.onboot is not None:
            params["onboot"] = _render_bool(self.onboot)
        if self.protection is not None:
            params["protection"] = _render_bool(self.protection)
        if self.tags:
            params["tags"] = ";".join(property_value("tags", tag) for tag in self.tags)
        return params
