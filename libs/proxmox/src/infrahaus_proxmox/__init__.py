"""Async Proxmox VE client (`ProxmoxClient`), its models and errors.

    tls = TlsPolicy.pinned(fingerprint)  # the node's SHA-256 "AB:CD:..", confirmed when it was registered
    async with ProxmoxClient("https://pve.lan:8006", TokenAuth("root@pam!infrahaus", secret), tls=tls) as pve:
        upid = await pve.lxc.create("pve", LxcCreate(vmid=120, ostemplate=..., rootfs="local-lvm:8"))
        await pve.tasks.wait(upid, timeout=300)  # ProxmoxTaskFailed carries exit status and log tail

Every error is a `ProxmoxError`. The pct runner lives in `infrahaus_proxmox.pct`, the simulator
in `infrahaus_proxmox.simulator`.
"""

from infrahaus_proxmox.client import ProxmoxClient, TicketAuth, TokenAuth
from infrahaus_proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxConflict,
    ProxmoxConnectTimeout,
    ProxmoxError,
    ProxmoxLocked,
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxProxyError,
    ProxmoxResponseError,
    ProxmoxServerError,
    ProxmoxTaskFailed,
    ProxmoxTfaRequired,
    ProxmoxTimeout,
    ProxmoxTlsError,
    ProxmoxUnreachable,
    ProxmoxValidationError,
)
from infrahaus_proxmox.models import (
    ClusterResource,
    CpuInfo,
    DiskUsage,
    LxcConfig,
    LxcCreate,
    LxcFeatures,
    LxcInterface,
    LxcNetwork,
    LxcRootfs,
    LxcStatus,
    LxcSummary,
    MemoryUsage,
    NetworkInterface,
    NodeStatus,
    NodeSummary,
    Storage,
    StorageVolume,
    TaskStatus,
    Ticket,
    Version,
)
from infrahaus_proxmox.tls import CertificateInfo, TlsPolicy, fetch_certificate, normalize_fingerprint
from infrahaus_proxmox.upid import Upid, parse_upid

__all__ = [
    "CertificateInfo",
    "ClusterResource",
    "CpuInfo",
    "DiskUsage",
    "LxcConfig",
    "LxcCreate",
    "LxcFeatures",
    "LxcInterface",
    "LxcNetwork",
    "LxcRootfs",
    "LxcStatus",
    "LxcSummary",
    "MemoryUsage",
    "NetworkInterface",
    "NodeStatus",
    "NodeSummary",
    "ProxmoxAuthError",
    "ProxmoxClient",
    "ProxmoxConflict",
    "ProxmoxConnectTimeout",
    "ProxmoxError",
    "ProxmoxLocked",
    "ProxmoxNotFound",
    "ProxmoxPermissionError",
    "ProxmoxProxyError",
    "ProxmoxResponseError",
    "ProxmoxServerError",
    "ProxmoxTaskFailed",
    "ProxmoxTfaRequired",
    "ProxmoxTimeout",
    "ProxmoxTlsError",
    "ProxmoxUnreachable",
    "ProxmoxValidationError",
    "Storage",
    "StorageVolume",
    "TaskStatus",
    "Ticket",
    "TicketAuth",
    "TlsPolicy",
    "TokenAuth",
    "Upid",
    "Version",
    "fetch_certificate",
    "normalize_fingerprint",
    "parse_upid",
]
