"""Input and output shapes of the node registry. Secrets are write-only: no output struct has a secret field."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.allowlist import whole
from infrahaus_domain.nodes.privileges import MissingPrivilege

Name = Annotated[
    str,
    # No control characters: a NUL would reach PostgreSQL (which refuses it) instead of a 422.
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=whole(r"[^\x00-\x1f\x7f]+"),
        description="Display name, unique per user.",
        extra={"message": "Must not contain control characters (line breaks, tabs)."},
    ),
]
Host = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=255,
        pattern=whole(r"[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?"),
        description="Host name, IPv4 or IPv6 address (no brackets, no scheme).",
        extra={"message": "Give a host name or an IP address, without scheme, port or brackets (e.g. pve1.lan)."},
        examples=["pve1.example.com", "192.0.2.10"],
    ),
]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PveNode = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=whole(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?"),
        description="The node name used in Proxmox API paths.",
        extra={"message": "A Proxmox node name: letters, digits, dots and hyphens (e.g. pve1)."},
    ),
]
TokenId = Annotated[
    str,
    msgspec.Meta(
        max_length=255,
        # The Proxmox client's rule (a realm and a token name of 2+ chars), in printable ASCII: it goes into a header.
        pattern=whole(r"[\x22-\x2e\x30-\x39\x3b-\x3f\x41-\x7e]+@[A-Za-z][A-Za-z0-9._-]+![A-Za-z][A-Za-z0-9._-]+"),
        description="Proxmox API token id, `user@realm!name`.",
        extra={"message": "A Proxmox API token id looks like user@realm!name (e.g. root@pam!infrahaus)."},
        examples=["root@pam!infrahaus"],
    ),
]
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]
# An API token secret travels in an Authorization header: printable ASCII without spaces.
TokenSecret = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=16384,
        pattern=whole(r"[!-~]+"),
        extra={"message": "A token secret is printable ASCII without spaces (paste it as Proxmox showed it)."},
    ),
]
Fingerprint = Annotated[
    str,
    msgspec.Meta(
        max_length=128,
        pattern=whole(r"(?i:sha256[:=]?\s*)?[0-9A-Fa-f]{2}([:\s-]?[0-9A-Fa-f]{2}){31}"),
        description="SHA-256 fingerprint of the node TLS certificate, `AB:CD:…` (pins a self-signed certificate).",
        extra={"message": "A SHA-256 fingerprint is 32 hexadecimal pairs, e.g. AB:CD:… (as Proxmox shows it)."},
    ),
]
SshUsername = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        pattern=whole(r"[a-z_][a-z0-9_-]*"),
        extra={"message": "A Linux user name: lowercase letters, digits, hyphens and underscores (e.g. root)."},
    ),
]
SshHostKey = Annotated[
    str,
    msgspec.Meta(
        max_length=16384,
        pattern=whole(r"(ssh-[a-z0-9-]+|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?"),
        description="The node's SSH host key as an OpenSSH public key line (`ssh-ed25519 AAAA…`).",
        extra={"message": "Not an OpenSSH public key line (`ssh-ed25519 AAAA…`)."},
    ),
]


class NodeCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    host: Host
    token_id: TokenId
    token_secret: TokenSecret
    port: Port = 8006
    pve_node: PveNode | None = None
    tls_verify: bool = True
    tls_fingerprint: Fingerprint | None = None
    ssh_host: Host | None = None
    ssh_port: Port = 22
    ssh_username: SshUsername = "root"
    ssh_password: Secret | None = None
    ssh_private_key: Secret | None = None
    ssh_host_key: SshHostKey | None = None


class NodeUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Omitted fields keep their value; `null` clears a secret or an optional setting."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    host: Host | msgspec.UnsetType = msgspec.UNSET
    port: Port | msgspec.UnsetType = msgspec.UNSET
    pve_node: PveNode | msgspec.UnsetType = msgspec.UNSET
    token_id: TokenId | msgspec.UnsetType = msgspec.UNSET
    token_secret: TokenSecret | msgspec.UnsetType = msgspec.UNSET
    tls_verify: bool | msgspec.UnsetType = msgspec.UNSET
    tls_fingerprint: Fingerprint | msgspec.UnsetType | None = msgspec.UNSET
    ssh_host: Host | msgspec.UnsetType | None = msgspec.UNSET
    ssh_port: Port | msgspec.UnsetType = msgspec.UNSET
    ssh_username: SshUsername | msgspec.UnsetType = msgspec.UNSET
    ssh_password: Secret | msgspec.UnsetType | None = msgspec.UNSET
    ssh_private_key: Secret | msgspec.UnsetType | None = msgspec.UNSET
    ssh_host_key: SshHostKey | msgspec.UnsetType | None = msgspec.UNSET


class NodeRead(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    host: str
    port: int
    pve_node: str
    token_id: str
    tls_verify: bool
    tls_fingerprint: str | None
    ssh_host: str
    ssh_port: int
    ssh_username: str
    ssh_host_key: str | None
    is_default: bool
    has_token_secret: bool
    has_ssh_password: bool
    has_ssh_private_key: bool
    container_count: int
    created_at: datetime
    updated_at: datetime


class NodePage(msgspec.Struct, kw_only=True):
    items: list[NodeRead]
    next_cursor: str | None


class NodeProbe(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: Host
    port: Port = 8006


class CertificateRead(msgspec.Struct, kw_only=True):
    fingerprint_sha256: str
    subject: str
    issuer: str
    not_after: datetime


class ApiTestResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    latency_ms: float | None = None
    version: str | None = None
    error: str | None = None
    code: str | None = None
    # With code `missing_privileges`: every privilege the API token lacks, with its ACL path.
    missing_privileges: list[MissingPrivilege] | None = None


class SshTestResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    latency_ms: float | None = None
    error: str | None = None
    code: str | None = None


class NodeTestResult(msgspec.Struct, kw_only=True):
    api: ApiTestResult
    ssh: SshTestResult


class Usage(msgspec.Struct, kw_only=True):
    total: int
    used: int


class NodeStatusRead(msgspec.Struct, kw_only=True):
    cpu: float
    cpus: int | None
    memory: Usage
    disk: Usage
    uptime: int
    pve_version: str
    kernel_version: str | None


class StorageRead(msgspec.Struct, kw_only=True):
    storage: str
    type: str
    content: list[str]
    total: int
    used: int
    avail: int
    active: bool
    enabled: bool


class OsTemplateRead(msgspec.Struct, kw_only=True):
    volid: str
    name: str
    storage: str
    size: int


class BridgeRead(msgspec.Struct, kw_only=True):
    iface: str
    cidr: str | None
    active: bool


StorageContent = Literal["rootdir", "images", "vztmpl", "iso", "backup", "snippets", "import"]
