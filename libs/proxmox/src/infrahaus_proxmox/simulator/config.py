"""Configuration of a simulated Proxmox VE fleet. The defaults are the demo defaults of SPEC §10."""

from dataclasses import dataclass, field
from pathlib import Path

DEMO_NODE = "pve"
DEMO_USER = "root@pam"
DEMO_PASSWORD = "demo"  # noqa: S105 - documented demo credential of the simulator
DEMO_TOKEN_ID = "root@pam!infrahaus"  # noqa: S105 - a token id, not a secret
DEMO_TOKEN_SECRET = "demo-token-secret"  # noqa: S105 - documented demo credential of the simulator
DEMO_SSH_USER = "root"
DEMO_OSTEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
DEMO_TEMPLATES = (DEMO_OSTEMPLATE, "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")

# Every privilege PVE 8 knows; root@pam (and tokens of root@pam without privilege separation) hold all.
ALL_PRIVILEGES = frozenset(
    {
        "Datastore.Allocate",
        "Datastore.AllocateSpace",
        "Datastore.AllocateTemplate",
        "Datastore.Audit",
        "Group.Allocate",
        "Mapping.Audit",
        "Mapping.Modify",
        "Mapping.Use",
        "Permissions.Modify",
        "Pool.Allocate",
        "Pool.Audit",
        "Realm.Allocate",
        "Realm.AllocateUser",
        "SDN.Allocate",
        "SDN.Audit",
        "SDN.Use",
        "Sys.AccessNetwork",
        "Sys.Audit",
        "Sys.Console",
        "Sys.Incoming",
        "Sys.Modify",
        "Sys.PowerMgmt",
        "Sys.Syslog",
        "User.Modify",
        "VM.Allocate",
        "VM.Audit",
        "VM.Backup",
        "VM.Clone",
        "VM.Config.CDROM",
        "VM.Config.CPU",
        "VM.Config.Cloudinit",
        "VM.Config.Disk",
        "VM.Config.HWType",
        "VM.Config.Memory",
        "VM.Config.Network",
        "VM.Config.Options",
        "VM.Console",
        "VM.Migrate",
        "VM.Monitor",
        "VM.PowerMgmt",
        "VM.Snapshot",
        "VM.Snapshot.Rollback",
    }
)


@dataclass
class SimToken:
    """An API token. With ``privsep`` it holds only ``privileges`` (ACL path -> privilege names, propagating
    to sub-paths); without, it inherits its user's. Set ``revoked`` to make it fail like a deleted token."""

    secret: str
    privsep: bool = False
    privileges: dict[str, set[str]] = field(default_factory=dict)
    revoked: bool = False


@dataclass
class SimNodeConfig:
    name: str = DEMO_NODE
    api_port: int = 0  # 0 = pick a free port
    ssh_port: int = 0
    latency: float = 0.0  # seconds added to every API response
    guests: int = 0  # guests pre-populated at start (a mix of LXC and QEMU, running and stopped)
    ssh_users: dict[str, str] = field(default_factory=lambda: {DEMO_SSH_USER: DEMO_PASSWORD})


def _default_tokens() -> dict[str, SimToken]:
    return {DEMO_TOKEN_ID: SimToken(secret=DEMO_TOKEN_SECRET, privsep=False)}


@dataclass
class SimulatorConfig:
    data_dir: Path
    nodes: list[SimNodeConfig] = field(default_factory=lambda: [SimNodeConfig()])
    # userid ("root@pam") -> password
    users: dict[str, str] = field(default_factory=lambda: {DEMO_USER: DEMO_PASSWORD})
    tokens: dict[str, SimToken] = field(default_factory=_default_tokens)
    # Seconds a task runs before it ends (create, start, stop, ...).
    task_duration: float = 0.05
    bind: str = "127.0.0.1"
    # Users whose login asks for a second factor (the ticket answer carries NeedTFA): userid -> the one
    # TOTP code the simulator accepts in the second step (password "totp:<code>" with tfa-challenge).
    tfa_users: dict[str, str] = field(default_factory=dict)
    # ACLs of users other than root@pam: userid -> ACL path -> privileges.
    user_privileges: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    # vztmpl volumes present on storage ``local`` of every node.
    templates: tuple[str, ...] = DEMO_TEMPLATES
