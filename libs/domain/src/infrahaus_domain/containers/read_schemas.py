"""Output shapes of the containers read side: the live list, summary, detail, services, credentials, service logs.

None of these structs has a field that can carry a credential value except `CredentialsRead`, which only the
audited reveal endpoint returns.
"""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.containers.schemas import ContainerSpec, Lifecycle, NamedRef
from infrahaus_domain.operations.schemas import OperationRead

LiveStatus = Literal["running", "stopped", "paused", "unknown"]
ContainerAction = Literal[
    "start", "stop", "shutdown", "restart", "delete", "retry", "refresh_services", "sync", "snapshot"
]


class ContainerUsage(msgspec.Struct, kw_only=True):
    """Live usage of a running container as its node reports it (bytes and seconds)."""

    cpu_percent: float
    memory_used: int
    memory_max: int
    disk_used: int
    disk_max: int
    uptime_s: int


class ContainerRead(msgspec.Struct, kw_only=True):
    """A container with its live state. `status` is `unknown` when the node did not answer in time or no longer
    has the guest; `resources` is set only while running; `allowed_actions` are what the API would accept now."""

    id: UUID
    node: NamedRef
    vmid: int
    hostname: str
    template: NamedRef | None
    lifecycle: Lifecycle
    status: LiveStatus
    ip_address: str | None
    resources: ContainerUsage | None
    allowed_actions: list[ContainerAction]
    active_operation: OperationRead | None
    created_at: datetime
    updated_at: datetime


class UnreachableNode(msgspec.Struct, kw_only=True):
    """A node whose live state could not be read (its containers show `unknown`); `error` says why."""

    id: UUID
    name: str
    error: str


class ContainerPage(msgspec.Struct, kw_only=True):
    """A page of containers, newest first, plus the nodes that did not answer."""

    items: list[ContainerRead]
    next_cursor: str | None
    unreachable_nodes: list[UnreachableNode]


class NodeCount(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    total: int
    by_status: dict[str, int]
    reachable: bool


class ContainerSummary(msgspec.Struct, kw_only=True):
    """Counts over all the caller's containers: by lifecycle, by live status and per node."""

    total: int
    by_lifecycle: dict[str, int]
    by_status: dict[str, int]
    nodes: list[NodeCount]
    unreachable_nodes: list[UnreachableNode]


class NetworkRead(msgspec.Struct, kw_only=True):
    """One NIC of the Proxmox config (`net0`, `net1`, ...)."""

    key: str
    name: str
    bridge: str | None
    ip: str | None
    gateway: str | None
    ip6: str | None
    gateway6: str | None
    hwaddr: str | None
    tag: int | None
    firewall: bool | None


class RootfsRead(msgspec.Struct, kw_only=True):
    volume: str
    storage: str
    size: str | None
    size_bytes: int | None


class FeaturesRead(msgspec.Struct, kw_only=True):
    nesting: bool
    keyctl: bool
    fuse: bool
    mknod: bool
    mount: list[str]


class ContainerConfig(msgspec.Struct, kw_only=True):
    """The container's Proxmox configuration, parsed (memory and swap in MiB)."""

    hostname: str | None
    ostype: str | None
    arch: str | None
    cores: int | None
    memory_mb: int | None
    swap_mb: int | None
    unprivileged: bool
    onboot: bool
    rootfs: RootfsRead | None
    networks: list[NetworkRead]
    features: FeaturesRead
    nameserver: str | None
    tags: list[str]
    description: str | None
    lock: str | None


class ConfigUnavailable(msgspec.Struct, kw_only=True):
    """Why `config` is null: `node_unreachable` (or another node error code), or `missing_on_node` when the node no
    longer has the container."""

    code: str
    detail: str


class RevisionState(msgspec.Struct, kw_only=True):
    """Where the container stands against its template's revisions (`GET /api/templates/{id}/revisions`):
    `created_from` (null for containers made before revisions existed), `synced_to` (the last successful sync,
    null before one), `latest` (the template's newest; null without a template), and whether a sync runs after every
    start made through infrahaus (`sync_on_start`)."""

    created_from: int | None
    synced_to: int | None
    latest: int | None
    sync_on_start: bool


class ContainerDetail(ContainerRead, kw_only=True):
    """The list item plus the parsed Proxmox config (null with `config_error` when it cannot be read) and the
    creation request as accepted (template defaults applied; never a password)."""

    config: ContainerConfig | None
    config_error: ConfigUnavailable | None
    request: ContainerSpec | None
    last_error: dict[str, Any] | None
    revisions: RevisionState


class ServiceRead(msgspec.Struct, kw_only=True):
    """A discovered service. `url` is built from the container's IP and the port (`http(s)://` for web ports,
    `tcp://` otherwise); `has_credentials` says whether a reveal would return anything."""

    name: str
    type: str
    port: int | None
    protocol: str | None
    status: str
    is_system: bool
    url: str | None
    has_credentials: bool


class ServiceList(msgspec.Struct, kw_only=True):
    services: list[ServiceRead]
    ip_address: str | None
    discovered_at: datetime | None


class CredentialsRead(msgspec.Struct, kw_only=True):
    """Decrypted key/value pairs a setup script saved for the service. Every reveal is recorded as an event."""

    service: str
    credentials: dict[str, str]


class ServiceLogs(msgspec.Struct, kw_only=True):
    """The last journal lines of the service's unit, oldest first."""

    service: str
    unit: str
    lines: list[str]
