"""What the creation pipeline works from: the container's creation plan and the worker's time limits.

The plan is built from the container's stored creation request (defaults from its template applied,
scripts filtered and ordered, packages limited to the chosen managers). It holds no secret: the root
password is generated inside the create step and dropped there.
"""

import os
import posixpath
import re
from collections.abc import Mapping
from typing import Literal

import msgspec

FilePolicy = Literal["replace", "default", "backup"]
PackageManager = Literal["apt", "pip", "npm", "custom"]

# Allow-lists for every name that reaches a shell inside the container (SPEC §6).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
SAFE_PATH_PART = re.compile(r"^[A-Za-z0-9._@+-]+$")
PACKAGE_NAMES: dict[str, re.Pattern[str]] = {
    "apt": re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}$"),
    "pip": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(\[[A-Za-z0-9,._-]+\])?$"),
    "npm": re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]{0,213}$"),
}
# apt wants an exact version; pip and npm also take specifiers (">=21,<23", "^1.2").
PACKAGE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+:~_-]{0,63}$")
SPECIFIER_VERSION = re.compile(r"^[A-Za-z0-9<>=!~^*][A-Za-z0-9.+:~^*<>=!,_-]{0,63}$")


class PlanError(ValueError):
    """A plan value fails the allow-list (the API validates too; the worker never trusts it blindly)."""


class NetworkPlan(msgspec.Struct, kw_only=True, frozen=True):
    mode: Literal["dhcp", "static", "auto", "manual"] = "dhcp"
    ip_cidr: str | None = None
    gateway: str | None = None


class FilePlan(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    target_path: str  # the directory the file goes into
    policy: FilePolicy = "replace"
    mode: int = 0o644
    content: str = ""

    @property
    def path(self) -> str:
        return posixpath.join(self.target_path, self.name)


class PackagePlan(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    manager: PackageManager
    version: str | None = None


class ScriptPlan(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    content: str


class CreationPlan(msgspec.Struct, kw_only=True, frozen=True):
    """Everything the pipeline needs about one container, resolved before the first step."""

    pve_node: str
    vmid: int
    hostname: str
    os_template: str
    cores: int = 1
    memory_mb: int = 512
    swap_mb: int = 512
    disk_gb: int = 8
    storage: str = "local-lvm"
    bridge: str = "vmbr0"
    network: NetworkPlan = NetworkPlan()
    network6: NetworkPlan | None = None
    nameserver: str | None = None
    ssh_public_keys: str | None = None
    unprivileged: bool = True
    nesting: bool = False
    keyctl: bool = False
    fuse: bool = False
    tags: tuple[str, ...] = ()
    onboot: bool = False
    description: str | None = None
    start_after_create: bool = True
    files: tuple[FilePlan, ...] = ()
    packages: tuple[PackagePlan, ...] = ()
    scripts: tuple[ScriptPlan, ...] = ()

    @property
    def root_only_features(self) -> bool:
        """Feature flags an API token cannot set (all but nesting; every one on a privileged container)."""
        return self.keyctl or self.fuse or (self.nesting and not self.unprivileged)

    @property
    def needs_provisioning(self) -> bool:
        return bool(self.files or self.packages or self.scripts)


class Limits(msgspec.Struct, kw_only=True, frozen=True):
    """Time limits in seconds (SPEC §8 defaults), configurable through ``INFRAHAUS_WORKER_*``."""

    create_task: float = 600
    start_stop: float = 120
    shutdown_timeout: int = 60
    script: float = 1800
    packages: float = 1800
    creation: float = 7200
    lifecycle: float = 600
    lock_wait: float = 120
    ready_wait: float = 120
    heartbeat_interval: float = 5
    # A running operation whose heartbeat is older than this is considered lost by the reconciler.
    heartbeat_stale: float = 60
    # A queued operation older than this whose message never ran is sent again by the reconciler.
    requeue_after: float = 60
    reconcile_interval: float = 15
    # After this long without a broker heartbeat, a dead worker's unacknowledged messages are redelivered.
    broker_heartbeat: float = 20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Limits":
        """Read ``INFRAHAUS_WORKER_<FIELD>`` overrides (seconds), e.g. ``INFRAHAUS_WORKER_SCRIPT=600``."""
        values: dict[str, float] = {}
        for name in cls.__struct_fields__:
            variable = f"INFRAHAUS_WORKER_{name.upper()}"
            raw = environ.get(variable)
            if raw is None:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise PlanError(f"{variable} must be a number of seconds") from None
            if value <= 0:
                raise PlanError(f"{variable} must be positive")
            values[name] = value
        if "shutdown_timeout" in values:
            values["shutdown_timeout"] = int(values["shutdown_timeout"])
        return msgspec.convert(values, cls)


def check_name(value: str, what: str) -> str:
    """Refuse a name that is not on the allow-list (no slashes, no leading dash, no spaces)."""
    if not SAFE_NAME.match(value):
        raise PlanError(f"invalid {what}: {value!r}")
    return value


def check_dir(path: str) -> str:
    """An absolute, normalised directory without `..` or odd characters."""
    stripped = path.rstrip("/") or "/"
    if not path.startswith("/") or posixpath.normpath(stripped) != stripped:
        raise PlanError(f"target path must be absolute and normalised: {path!r}")
    parts = [p for p in path.split("/") if p]
    if any(p in {".", ".."} or not SAFE_PATH_PART.match(p) for p in parts):
        raise PlanError(f"invalid target path: {path!r}")
    return stripped


def package_spec(package: PackagePlan) -> str:
    """The argument one package manager gets for this package (``name``, ``name=1.2``, ``name==1.2``, ``name@1.2``)."""
    pattern = PACKAGE_NAMES.get(package.manager)
    if pattern is None or not pattern.match(package.name):
        raise PlanError(f"invalid {package.manager} package name: {package.name!r}")
    if package.version is None:
        return package.name
    pattern = PACKAGE_VERSION if package.manager == "apt" else SPECIFIER_VERSION
    if not pattern.match(package.version):
        raise PlanError(f"invalid version for {package.name}: {package.version!r}")
    separator = {"apt": "=", "pip": "==", "npm": "@"}[package.manager]
    if package.manager == "pip" and package.version[0] in "<>=!~":
        separator = ""
    return f"{package.name}{separator}{package.version}"
