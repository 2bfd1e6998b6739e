"""Drift: what differs between a running container and a revision of its template.

Compared, each item `same | changed | missing | extra` with a detail:

- **files**: checksum, mode and owner of each template file, honouring its policy (`default` writes a file only when
  it is absent, so a `default` file the user changed is not drift — only its absence is);
- **packages**: installed or not, and the version when the template pins one;
- **scripts**: the digest of each script as the container last applied it against the revision's;
- **config**: cores, memory, swap, features and the network bridge as the container runs with them (a value Proxmox
  keeps pending for the next start counts as changed, and says so).

Files and packages are read in **one** `pct exec` (a constant probe script; every path and name is an argument, never
part of the script). The guest's config is read first: it must carry this container's ownership marker, or nothing is
run inside it. The whole computation is bounded (`INFRAHAUS_DRIFT_TIMEOUT`) and its answer reused for
`INFRAHAUS_DRIFT_CACHE_SECONDS`, keyed by the container's newest operation, so any operation makes it stale.
"""

import asyncio
import fnmatch
import hashlib
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from infrahaus_domain.allowlist import UnsafeValueError, validate_file_name, validate_target_path
from infrahaus_domain.containers.errors import InvalidStateError, OwnershipMismatchError
from infrahaus_domain.containers.marker import ownership, read_marker
from infrahaus_domain.containers.schemas import ContainerSpec, SpecFile, SpecPackage
from infrahaus_domain.day_two.schemas import DriftItem, DriftReport
from infrahaus_domain.nodes.connection import NodeAccess, NodeEndpoint, node_errors
from infrahaus_domain.nodes.errors import NodeRequestError
from infrahaus_domain.proxmox_errors import ssh_domain_error
from infrahaus_proxmox.errors import ProxmoxNotFound
from infrahaus_proxmox.models import LxcConfig
from infrahaus_proxmox.ssh_types import PctNotRunning, SshError

# Reads what it is given as (kind, name) argument pairs, one answer line per pair, tab-separated.
PROBE = r"""
while [ "$#" -ge 2 ]; do
  kind=$1; name=$2; shift 2
  case "$kind" in
    file)
      if [ -f "$name" ]; then
        meta=$(stat -c '%s %a %u %g' -- "$name"); sum=$(sha256sum < "$name" | cut -d' ' -f1)
        printf 'file\t%s\t%s\t%s\n' "$name" "$meta" "$sum"
      elif [ -e "$name" ]; then printf 'file\t%s\tnot-a-file\n' "$name"
      else printf 'file\t%s\tmissing\n' "$name"; fi ;;
    apt)
      v=$(dpkg-query -W -f='${Status}\t${Version}' "$name" 2>/dev/null | tr '\t' ' ')
      case "$v" in "install ok installed "*) printf 'apt\t%s\t%s\n' "$name" "${v#install ok installed }" ;;
        *) printf 'apt\t%s\tmissing\n' "$name" ;; esac ;;
    pip)
      v=$(python3 -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
      if [ -n "$v" ]; then printf 'pip\t%s\t%s\n' "$name" "$v"; else printf 'pip\t%s\tmissing\n' "$name"; fi ;;
    npm)
      v=$(npm ls --global --depth=0 2>/dev/null | grep -F -- "$name@" | head -n 1)
      if [ -n "$v" ]; then printf 'npm\t%s\t%s\n' "$name" "${v##*@}"; else printf 'npm\t%s\tmissing\n' "$name"; fi ;;
  esac
done
"""
_PROBE_MANAGERS = ("apt", "pip", "npm")


@dataclass(frozen=True, kw_only=True)
class DriftTarget:
    """What the container is compared with: the `target` spec (a revision applied to the container's choices) and
    the spec it has applied (`applied`); things only the applied spec has are `extra`."""

    target: ContainerSpec
    applied: ContainerSpec
    revision: int | None
    applied_revision: int | None


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    files: dict[str, tuple[str, ...]]
    packages: dict[tuple[str, str], str | None]


def file_path(file: SpecFile) -> str:
    return posixpath.join(file.target_path, file.name)


def probe_arguments(files: list[SpecFile], packages: list[SpecPackage]) -> list[str]:
    """The probe's (kind, name) pairs; every path and name checked against the allow-list again."""
    argv: list[str] = []
    for file in files:
        try:
            validate_target_path(file.target_path)
            validate_file_name(file.name)
        except UnsafeValueError:
            continue
        argv += ["file", file_path(file)]
    for package in packages:
        if package.manager in _PROBE_MANAGERS:
            argv += [package.manager, package.name]
    return argv


def parse_probe(lines: list[str]) -> ProbeResult:
    files: dict[str, tuple[str, ...]] = {}
    packages: dict[tuple[str, str], str | None] = {}
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        kind, name, *rest = parts
        if kind == "file":
            files[name] = tuple(rest)
        elif kind in _PROBE_MANAGERS:
            packages[(kind, name)] = None if rest[0] == "missing" else rest[0]
    return ProbeResult(files=files, packages=packages)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def compare_files(target: DriftTarget, probe: ProbeResult) -> list[DriftItem]:
    items: list[DriftItem] = []
    wanted = {file_path(f): f for f in target.target.files}
    for path, file in wanted.items():
        seen = probe.files.get(path, ("missing",))
        if seen[0] == "missing":
            items.append(DriftItem(kind="file", name=path, state="missing", detail=f"absent (policy {file.policy})"))
            continue
        if seen[0] == "not-a-file" or len(seen) < 2:
            items.append(DriftItem(kind="file", name=path, state="changed", detail="not a regular file"))
            continue
        if file.policy == "default":
            items.append(
                DriftItem(kind="file", name=path, state="same", detail="present; policy default keeps its content")
            )
            continue
        size, mode, uid, gid = [*seen[0].split(), "", "", "", ""][:4]
        problems: list[str] = []
        if seen[1] != _digest(file.content):
            problems.append("content differs")
        if mode and int(mode, 8) != int(file.mode, 8):
            problems.append(f"mode {int(mode, 8):04o}, expected {file.mode}")
        if (uid, gid) != ("0", "0"):
            problems.append(f"owner {uid}:{gid}, expected 0:0")
        if problems:
            items.append(DriftItem(kind="file", name=path, state="changed", detail="; ".join(problems)))
        else:
            items.append(DriftItem(kind="file", name=path, state="same", detail=f"{size} bytes, mode {file.mode}"))
    for file in target.applied.files:
        path = file_path(file)
        if path not in wanted and probe.files.get(path, ("missing",))[0] != "missing":
            items.append(
                DriftItem(kind="file", name=path, state="extra", detail="no longer in the template; left in place")
            )
    return items


def _version_matches(manager: str, wanted: str, installed: str) -> bool:
    if manager == "pip":
        if wanted.startswith("=="):
            return installed == wanted[2:]
        # A range (>=, ~=, ...) is not evaluated here: an installed package satisfies it as far as drift goes.
        return True
    return fnmatch.fnmatchcase(installed, wanted)


def compare_packages(target: DriftTarget, probe: ProbeResult) -> list[DriftItem]:
    items: list[DriftItem] = []
    wanted = {(p.manager, p.name): p for p in target.target.packages if p.manager in _PROBE_MANAGERS}
    for key, package in wanted.items():
        name = f"{package.manager}:{package.name}"
        installed = probe.packages.get(key)
        if installed is None:
            items.append(DriftItem(kind="package", name=name, state="missing", detail="not installed"))
        elif package.version and not _version_matches(package.manager, package.version, installed):
            detail = f"version {installed} installed, {package.version} wanted"
            items.append(DriftItem(kind="package", name=name, state="changed", detail=detail))
        else:
            items.append(DriftItem(kind="package", name=name, state="same", detail=f"version {installed}"))
    for package in target.applied.packages:
        key = (package.manager, package.name)
        if key not in wanted and probe.packages.get(key) is not None:
            items.append(
                DriftItem(
                    kind="package",
                    name=f"{package.manager}:{package.name}",
                    state="extra",
                    detail="installed, no longer in the template (a sync does not remove packages)",
                )
            )
    return items


def compare_scripts(target: DriftTarget) -> list[DriftItem]:
    applied = {s.name: _digest(s.content) for s in target.applied.scripts}
    items: list[DriftItem] = []
    for script in target.target.scripts:
        digest = _digest(script.content)
        if script.name not in applied:
            items.append(DriftItem(kind="script", name=script.name, state="missing", detail="never run here"))
        elif applied[script.name] != digest:
            detail = f"changed since applied (sha256 {applied[script.name][:12]} → {digest[:12]})"
            items.append(DriftItem(kind="script", name=script.name, state="changed", detail=detail))
        else:
            items.append(DriftItem(kind="script", name=script.name, state="same", detail=f"sha256 {digest[:12]}"))
    wanted = {s.name for s in target.target.scripts}
    for name in applied:
        if name not in wanted:
            items.append(DriftItem(kind="script", name=name, state="extra", detail="no longer in the template"))
    return items


def desired_config(spec: ContainerSpec) -> dict[str, str]:
    """The Proxmox values a spec asks for, as comparable text."""
    return {
        "cores": str(spec.cores),
        "memory": str(spec.memory_mb),
        "swap": str(spec.swap_mb),
        "features.nesting": str(int(spec.nesting)),
        "features.keyctl": str(int(spec.keyctl)),
        "features.fuse": str(int(spec.fuse)),
        "net0.bridge": spec.bridge,
    }


def config_values(config: LxcConfig) -> dict[str, str]:
    features = config.features
    net0 = config.networks.get("net0")
    return {
        "cores": str(config.cores if config.cores is not None else 1),
        "memory": str(config.memory if config.memory is not None else 512),
        "swap": str(config.swap if config.swap is not None else 512),
        "features.nesting": str(int(bool(features.nesting))),
        "features.keyctl": str(int(bool(features.keyctl))),
        "features.fuse": str(int(bool(features.fuse))),
        "net0.bridge": (net0.bridge or "") if net0 is not None else "",
    }


def compare_config(target: DriftTarget, current: LxcConfig, pending: LxcConfig) -> list[DriftItem]:
    now, later = config_values(current), config_values(pending)
    items: list[DriftItem] = []
    for key, wanted in desired_config(target.target).items():
        if now[key] == wanted:
            items.append(DriftItem(kind="config", name=key, state="same", detail=wanted))
        elif later[key] == wanted:
            detail = f"{now[key]} now; {wanted} set and applied at the next start"
            items.append(DriftItem(kind="config", name=key, state="changed", detail=detail))
        else:
            items.append(DriftItem(kind="config", name=key, state="changed", detail=f"{now[key]}, expected {wanted}"))
    return items


def guard(config: LxcConfig, container_id: UUID) -> None:
    """Nothing runs inside a guest whose config does not carry this container's ownership marker."""
    if ownership(read_marker(config.tags, config.description), container_id) != "ours":
        raise OwnershipMismatchError(
            "The guest on the node does not carry this container's infrahaus marker; infrahaus does not look inside "
            "it. (A guest made before markers existed gets one at its next operation.)"
        )


async def compute(
    access: NodeAccess,
    endpoint: NodeEndpoint,
    *,
    container_id: UUID,
    vmid: int,
    target: DriftTarget,
    timeout: float,  # noqa: ASYNC109 - the report's own bound, reported as such
    ssh_timeout: float = 10.0,
) -> DriftReport:
    """Read the guest and compare (see the module docstring)."""
    node = endpoint.require_pve_node()
    try:
        async with asyncio.timeout(timeout):
            with node_errors(endpoint):
                async with access.client(endpoint, timeout=min(timeout, 10.0)) as client:
                    try:
                        current = await client.lxc.config(node, vmid, current=True)
                        pending = await client.lxc.config(node, vmid)
                        status = (await client.lxc.status(node, vmid)).status
                    except ProxmoxNotFound:
                        raise InvalidStateError("The container does not exist on its node.") from None
            guard(current, container_id)
            if status != "running":
                raise InvalidStateError(f"The container is {status}; drift is computed while it runs.")
            files = list(target.target.files) + [f for f in target.applied.files if f not in target.target.files]
            packages = list(target.target.packages) + [
                p for p in target.applied.packages if p not in target.target.packages
            ]
            argv = probe_arguments(files, packages)
            lines: list[str] = []
            if argv:
                runner = access.runner(endpoint, connect_timeout=ssh_timeout)
                try:
                    result = await runner.exec(
                        vmid, ["bash", "-c", PROBE, "infrahaus-drift", *argv], timeout=max(timeout - 1, 1)
                    )
                except PctNotRunning:
                    raise InvalidStateError("The container is not running; drift is computed while it runs.") from None
                except SshError as exc:
                    raise ssh_domain_error(exc, action="Reading the container") from None
                finally:
                    await runner.aclose()
                if result.exit_code != 0:
                    raise NodeRequestError(f"The drift probe exited with status {result.exit_code}.")
                lines = list(result.stdout)
    except TimeoutError:
        raise NodeRequestError(f"Computing the drift took longer than {timeout:g} s.") from None
    probe = parse_probe(lines)
    items = [
        *compare_files(target, probe),
        *compare_packages(target, probe),
        *compare_scripts(target),
        *compare_config(target, current, pending),
    ]
    return DriftReport(
        items=items,
        revision=target.revision,
        applied_revision=target.applied_revision,
        in_sync=all(item.state == "same" for item in items),
        computed_at=datetime.now(UTC),
        cached=False,
    )


def encode(report: DriftReport) -> bytes:
    return msgspec.json.encode(report)


def decode(raw: bytes) -> DriftReport:
    return msgspec.json.decode(raw, type=DriftReport)
