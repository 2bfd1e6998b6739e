"""Configuration of a simulated Proxmox VE fleet. The defaults are the demo defaults (the README's
walk-through and ``infrahaus pvesim``)."""

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

# PVE 8's privilege groups (pve-access-control stable-bookworm, src/PVE/AccessControl.pm `$privgroups`): the
# built-in roles are derived from them the way `create_roles` does.
_PRIVGROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "VM": {
        "root": (),
        "admin": (
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.Migrate",
            "VM.Monitor",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ),
        "user": ("VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.PowerMgmt"),
        "audit": ("VM.Audit",),
    },
    "Sys": {
        "root": ("Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"),
        "admin": ("Sys.Console", "Sys.Syslog"),
        "user": (),
        "audit": ("Sys.Audit",),
    },
    "Datastore": {
        "root": (),
        "admin": ("Datastore.Allocate", "Datastore.AllocateTemplate"),
        "user": ("Datastore.AllocateSpace",),
        "audit": ("Datastore.Audit",),
    },
    "SDN": {"root": (), "admin": ("SDN.Allocate", "SDN.Audit"), "user": ("SDN.Use",), "audit": ("SDN.Audit",)},
    "User": {
        "root": ("Realm.Allocate",),
        "admin": ("User.Modify", "Group.Allocate", "Realm.AllocateUser"),
        "user": (),
        "audit": (),
    },
    "Pool": {"root": (), "admin": ("Pool.Allocate",), "user": ("Pool.Audit",), "audit": ("Pool.Audit",)},
    "Mapping": {"root": (), "admin": ("Mapping.Modify",), "user": ("Mapping.Use",), "audit": ("Mapping.Audit",)},
}


def _builtin_roles() -> dict[str, frozenset[str]]:
    roles: dict[str, set[str]] = {"NoAccess": set(), "Administrator": {"Permissions.Modify"}, "PVEAdmin": set()}
    auditor: set[str] = set()
    for category, group in _PRIVGROUPS.items():
        roles["Administrator"].update(p for level in group.values() for p in level)
        admin = {*group["admin"], *group["user"], *group["audit"]}
        roles[f"PVE{category}Admin"] = admin
        roles["PVEAdmin"] |= admin
        if group["user"]:
            roles[f"PVE{category}User"] = {*group["user"], *group["audit"]}
        auditor.update(group["audit"])
    roles["PVEAuditor"] = auditor
    roles["PVEAdmin"].discard("Mapping.Modify")
    roles["PVETemplateUser"] = {"VM.Clone", "VM.Audit"}
    return {name: frozenset(privs) for name, privs in roles.items()}


BUILTIN_ROLES = _builtin_roles()
# Every privilege PVE 8 knows; root@pam holds them all (the Administrator role).
ALL_PRIVILEGES = BUILTIN_ROLES["Administrator"]

# The demo's least-privilege token: a user of the pve realm holding only what infrahaus needs (the README's
# `pveum` commands make the same role), and its privilege-separated token with the same role on the same paths.
DEMO_ROLE = "InfrahausProvisioner"
DEMO_ROLE_PRIVILEGES = frozenset(
    {
        "VM.Allocate",
        "VM.Audit",
        "VM.Config.CPU",
        "VM.Config.Disk",
        "VM.Config.Memory",
        "VM.Config.Network",
        "VM.Config.Options",
        "VM.PowerMgmt",
        "Datastore.AllocateSpace",
        "Datastore.Audit",
        "SDN.Use",
        "Sys.Audit",
    }
)
DEMO_ROLE_PATHS = ("/vms", "/storage", "/sdn/zones/localnetwork", "/nodes")
DEMO_LEAST_USER = "infrahaus@pve"
DEMO_LEAST_PASSWORD = "demo-provisioner"  # noqa: S105 - documented demo credential of the simulator
DEMO_LEAST_TOKEN_ID = "infrahaus@pve!provisioner"  # noqa: S105 - a token id, not a secret
DEMO_LEAST_TOKEN_SECRET = "demo-least-privilege-secret"  # noqa: S105 - documented demo credential


@dataclass
class SimToken:
    """An API token. Without ``privsep`` it holds its user's privileges; with it, only what the ACLs give the token
    itself, intersected with its user's (PVE's privilege separation). ``privileges`` is a shorthand for ACLs of this
    token: path -> privileges, each a role of its own, propagating. Set ``revoked`` to make it fail like a deleted
    token."""

    secret: str
    privsep: bool = False
    privileges: dict[str, set[str]] = field(default_factory=dict)
    revoked: bool = False


@dataclass(frozen=True)
class SimAcl:
    """One ACL entry as ``pveum acl modify <path> -roles <r> -users/-tokens/-groups <ids> -propagate 0|1`` makes it."""

    path: str
    roles: tuple[str, ...]
    users: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    propagate: bool = True


@dataclass
class SimNodeConfig:
    name: str = DEMO_NODE
    api_port: int = 0  # 0 = pick a free port
    ssh_port: int = 0
    latency: float = 0.0  # seconds added to every API response
    guests: int = 0  # guests pre-populated at start (a mix of LXC and QEMU, running and stopped)
    # Physical memory (bytes); the node status answers total, used (a quarter for the host plus 30 % of each running
    # guest's maximum) and available/free from it.
    memory: int = 32 * 1024**3
    # Bridges besides vmbr0 (no address), e.g. ("vmbr1",).
    extra_bridges: tuple[str, ...] = ()
    ssh_users: dict[str, str] = field(default_factory=lambda: {DEMO_SSH_USER: DEMO_PASSWORD})


def _default_users() -> dict[str, str]:
    return {DEMO_USER: DEMO_PASSWORD, DEMO_LEAST_USER: DEMO_LEAST_PASSWORD}


def _default_tokens() -> dict[str, SimToken]:
    return {
        DEMO_TOKEN_ID: SimToken(secret=DEMO_TOKEN_SECRET, privsep=False),
        DEMO_LEAST_TOKEN_ID: SimToken(secret=DEMO_LEAST_TOKEN_SECRET, privsep=True),
    }


def demo_acls() -> list[SimAcl]:
    """The demo role on each of its paths, for the least-privilege user and its token."""
    return [
        SimAcl(path, (DEMO_ROLE,), users=(DEMO_LEAST_USER,), tokens=(DEMO_LEAST_TOKEN_ID,)) for path in DEMO_ROLE_PATHS
    ]


@dataclass
class SimulatorConfig:
    data_dir: Path
    nodes: list[SimNodeConfig] = field(default_factory=lambda: [SimNodeConfig()])
    # userid ("root@pam") -> password
    users: dict[str, str] = field(default_factory=_default_users)
    # Accounts whose `enable` is 0 in user.cfg (`pveum user modify <userid> --enable 0`): no login, no token auth.
    disabled_users: set[str] = field(default_factory=set)
    # userid -> `expire` (seconds since the epoch; 0 or absent: never): after it, like a disabled account.
    user_expire: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, SimToken] = field(default_factory=_default_tokens)
    # Roles beside PVE's built-in ones: name -> privileges.
    roles: dict[str, frozenset[str]] = field(default_factory=lambda: {DEMO_ROLE: DEMO_ROLE_PRIVILEGES})
    acls: list[SimAcl] = field(default_factory=demo_acls)
    # group -> member userids
    groups: dict[str, set[str]] = field(default_factory=dict)
    # Seconds a task runs before it ends (create, start, stop, ...).
    task_duration: float = 0.05
    bind: str = "127.0.0.1"
    # Users whose login asks for a second factor (the ticket answer carries NeedTFA): userid -> the one
    # TOTP code the simulator accepts in the second step (password "totp:<code>" with tfa-challenge).
    tfa_users: dict[str, str] = field(default_factory=dict)
    # Shorthand ACLs of users: userid -> ACL path -> privileges (each a role of its own, propagating).
    user_privileges: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    # vztmpl volumes present on storage ``local`` of every node.
    templates: tuple[str, ...] = DEMO_TEMPLATES
    # pveproxy holds every 401 answer until this many seconds after the request began (3 on a real node).
    auth_failure_delay: float = 3.0
    # How long a task or call waits for a guest's config file lock before `can't lock file ... - got timeout`
    # (10 s on a real node; the create call's own short lock waits half of it, 5 s there).
    config_lock_timeout: float = 10.0
    # Seconds after a start before a DHCP guest has its IPv4 lease (its eth0 has no `inet` until then).
    dhcp_lease_delay: float = 0.0
    # Keep each node's guests, volumes and task history in `<data_dir>/<node>/state.json` (saved every
    # `persist_interval` seconds when changed, and at stop) and start from it when it exists.
    persist: bool = False
    persist_interval: float = 1.0
    # pvestatd's broadcast interval (10 s on a real node): `/cluster/resources` then shows each guest's status as of
    # the last broadcast, `unknown` before its first. 0 = always live.
    status_interval: float = 0.0
