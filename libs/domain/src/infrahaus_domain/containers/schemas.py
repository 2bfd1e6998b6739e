"""Shapes of container creation and lifecycle requests, and of the resolved creation spec the worker runs.

`ContainerCreate` is what a client sends (every field but `hostname` optional, defaults from the template).
`ContainerSpec` is the fully resolved request stored on the container (`Container.request`): the worker creates and
provisions from it alone, and a retry re-runs it, so later edits of the template do not change an existing
container. It carries script and file contents, never a password.
"""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.allowlist import whole
from infrahaus_domain.containers.placement_schemas import PlacementDecision, PlacementRequest
from infrahaus_domain.nodes.privileges import MissingPrivilege
from infrahaus_domain.operations.schemas import OperationRead

Vmid = Annotated[int, msgspec.Meta(ge=100, le=999_999_999, description="Proxmox guest id (cluster-wide).")]
Hostname = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=63,
        pattern=whole(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"),
        description="RFC 1123 host label.",
        extra={"message": "Use letters, digits and hyphens only, starting and ending with a letter or digit."},
        examples=["web-1"],
    ),
]
NodeChoice = Annotated[
    str,
    msgspec.Meta(
        pattern=whole(r"auto|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"),
        description="A node's id, or `auto` to let infrahaus pick one (see `placement`; default strategy "
        "`most_free`). Omitted: the default node, unless `placement` is given.",
        extra={"message": "Give a node's id (a UUID) or `auto`."},
        examples=["auto"],
    ),
]
Cores = Annotated[int, msgspec.Meta(ge=1, le=512)]
MemoryMb = Annotated[int, msgspec.Meta(ge=16, le=4 * 1024 * 1024)]
SwapMb = Annotated[int, msgspec.Meta(ge=0, le=4 * 1024 * 1024)]
DiskGb = Annotated[int, msgspec.Meta(ge=1, le=128 * 1024)]
ShortText = Annotated[str, msgspec.Meta(max_length=255)]
Lifecycle = Literal["creating", "ready", "error", "deleting"]
Manager = Literal["apt", "npm", "pip", "custom"]


class NetworkConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """IPv4: `dhcp`, or `static` with `ip_cidr` (e.g. `192.0.2.10/24`) and an optional `gateway`."""

    mode: Literal["dhcp", "static"] = "dhcp"
    ip_cidr: ShortText | None = None
    gateway: ShortText | None = None


class Network6Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """IPv6: `dhcp`, `auto` (SLAAC), or `static` with `ip_cidr` and an optional `gateway`."""

    mode: Literal["dhcp", "auto", "static"] = "auto"
    ip_cidr: ShortText | None = None
    gateway: ShortText | None = None


class Features(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """LXC features. Only `nesting` can be set with an API token; the others are applied over SSH as root."""

    nesting: bool | None = None
    keyctl: bool | None = None
    fuse: bool | None = None


class PackageChoice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which of the template's package managers to install, plus extra apt packages."""

    managers: list[Manager] | None = None
    extra: list[Annotated[str, msgspec.Meta(max_length=128)]] = msgspec.field(default_factory=list)


class ScriptChoice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A template script to run (in the list's order) or skip."""

    id: UUID
    enabled: bool = True


class ContainerCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /api/containers` and `POST /api/containers/preflight`."""

    hostname: Hostname
    node_id: NodeChoice | None = None
    placement: Annotated[
        PlacementRequest | None,
        msgspec.Meta(description="Pick the node automatically (with `node_id` omitted or `auto`)."),
    ] = None
    vmid: Vmid | None = None
    template_id: UUID | None = None
    os_template: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    cores: Cores | None = None
    memory_mb: MemoryMb | None = None
    swap_mb: SwapMb | None = None
    disk_gb: DiskGb | None = None
    storage: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    bridge: Annotated[str, msgspec.Meta(min_length=1, max_length=15)] | None = None
    network: NetworkConfig = msgspec.field(default_factory=NetworkConfig)
    ipv6: Network6Config | None = None
    nameserver: ShortText | None = None
    ssh_public_keys: Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    unprivileged: bool | None = None
    features: Features = msgspec.field(default_factory=Features)
    tags: list[Annotated[str, msgspec.Meta(max_length=64)]] = msgspec.field(default_factory=list)
    onboot: bool = False
    packages: PackageChoice = msgspec.field(default_factory=PackageChoice)
    scripts: list[ScriptChoice] | None = None
    start_after_create: bool = True
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    snapshot_before_scripts: Annotated[
        bool,
        msgspec.Meta(
            description="Take a snapshot before the first script and roll back to it when a step after it fails "
            "(file backups where the storage cannot snapshot); the operation then fails with "
            "`result.rolled_back: true`."
        ),
    ] = False


class SpecChoices(msgspec.Struct, kw_only=True):
    """What a creation request chose beyond its template, kept so another revision of the template can be applied
    the same way (see `containers.spec_builder`)."""

    package_managers: list[Manager] | None = None
    # Extra apt packages as `name` or `name=version`.
    extra_packages: list[str] = msgspec.field(default_factory=list)
    # Script names in run order; None: the template's enabled scripts.
    scripts: list[str] | None = None
    # Template scripts the request left out or turned off.
    skipped_scripts: list[str] = msgspec.field(default_factory=list)
    # Resource values given explicitly (cores, memory_mb, swap_mb, bridge, nesting, keyctl, fuse).
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)


class SpecScript(msgspec.Struct, kw_only=True):
    id: UUID | None
    name: str
    content: str


class SpecFile(msgspec.Struct, kw_only=True):
    name: str
    target_path: str
    policy: Literal["replace", "default", "backup"]
    mode: str
    content: str


class SpecPackage(msgspec.Struct, kw_only=True):
    name: str
    manager: Manager
    version: str | None = None


class ContainerSpec(msgspec.Struct, kw_only=True):
    """The resolved, validated creation request (stored as `Container.request`; the worker's only input).

    `scripts` are the enabled scripts in run order; `packages` only those of the chosen managers plus the extra apt
    packages; `os_template` is a volid or a short name the worker resolves against the node's templates.
    """

    node_id: UUID
    vmid: int
    hostname: str
    template_id: UUID | None
    template_name: str | None
    os_template: str
    cores: int
    memory_mb: int
    swap_mb: int
    disk_gb: int
    storage: str
    bridge: str
    network: NetworkConfig
    ipv6: Network6Config | None
    nameserver: str | None
    ssh_public_keys: str | None
    unprivileged: bool
    nesting: bool
    keyctl: bool
    fuse: bool
    tags: list[str]
    onboot: bool
    start_after_create: bool
    description: str | None
    scripts: list[SpecScript]
    files: list[SpecFile]
    packages: list[SpecPackage]
    # Day two: the template revision this spec was built from, the choices to build it again from another one, and
    # whether the creation snapshots before its scripts. Absent in specs stored before these existed.
    template_revision: int | None = None
    choices: SpecChoices | None = None
    snapshot_before_scripts: bool = False

    @property
    def needs_provisioning(self) -> bool:
        """Files, packages or scripts go into the container (it is started for them even when asked not to be)."""
        return bool(self.files or self.packages or self.scripts)

    @property
    def root_only_features(self) -> dict[str, bool]:
        """Features Proxmox accepts only from root@pam: the worker sets them with `pct set` before the first start."""
        wanted = {"keyctl": self.keyctl, "fuse": self.fuse}
        if not self.unprivileged:
            wanted["nesting"] = self.nesting
        return {k: v for k, v in wanted.items() if v}


class NamedRef(msgspec.Struct, kw_only=True):
    id: UUID
    name: str


class ContainerBrief(msgspec.Struct, kw_only=True):
    """The container as stored (no live status): what the write endpoints answer with."""

    id: UUID
    node: NamedRef
    vmid: int
    hostname: str
    template: NamedRef | None
    lifecycle: Lifecycle
    ip_address: str | None
    created_at: datetime
    updated_at: datetime


class ContainerCreated(msgspec.Struct, kw_only=True):
    """202 answer of `POST /api/containers`: the new container and its `create` operation."""

    container: ContainerBrief
    operation: OperationRead


class PreflightCheck(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    ok: bool
    detail: str
    # A failed check's stable code where there is one (`missing_privileges`), and for it every privilege the node's
    # API token lacks, with its ACL path.
    code: str | None = None
    missing_privileges: list[MissingPrivilege] | None = None


class PreflightReport(msgspec.Struct, kw_only=True):
    """Every check of a would-be creation; `ok` only when all passed. With placement (`node_id: auto`), the checks
    are those of the node it would pick, and `placement` says which and why (every node with its figures and the
    reasons it was skipped)."""

    ok: bool
    checks: list[PreflightCheck]
    placement: PlacementDecision | None


class ServiceInfo(msgspec.Struct, kw_only=True):
    """One discovered service, as the worker hands it to `ContainerService.replace_services`."""

    name: str
    type: str = "systemd"
    port: int | None = None
    protocol: str | None = None
    status: str = "unknown"
    is_system: bool = False
    pid: int | None = None
