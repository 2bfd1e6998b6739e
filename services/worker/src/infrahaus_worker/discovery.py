"""Service discovery inside a container: running systemd units, listening TCP ports, credential files.

One fixed script (``DISCOVERY_SCRIPT``, no interpolated input) runs in the container and prints
sections; the parsers below turn each section into data and ``build_services`` joins them:
a listening socket belongs to the unit whose cgroup holds its process, else to the unit whose main
PID is the process or one of its ancestors (pre-forking servers listen from worker children), or
by process name as a last resort.
"""

import re
from collections.abc import Iterable, Mapping

import msgspec

from infrahaus_domain.allowlist import UnsafeValueError, validate_unit_name

# Ports that almost always speak HTTP(S): one list, shared with the read side's service URLs.
from infrahaus_domain.containers.service_catalog import HTTP_PORTS, HTTPS_PORTS

SECTION_MARK = "@@infrahaus:"
CREDENTIALS_DIR = "/etc/infrahaus/credentials"

DISCOVERY_SCRIPT = f"""
export SYSTEMD_COLORS=0 LC_ALL=C
units="$(systemctl list-units --type=service --state=running --no-legend --plain --no-pager 2>/dev/null)"
echo '{SECTION_MARK}units'
printf '%s\\n' "$units"
echo '{SECTION_MARK}pids'
names="$(printf '%s\\n' "$units" | awk '{{print $1}}')"
# Unit names are split on purpose; globbing is off so none expands.
set -f
if [ -n "$names" ]; then systemctl show -p Id -p MainPID $names 2>/dev/null; fi
set +f
echo '{SECTION_MARK}ports'
ss -tlnpH 2>/dev/null
echo '{SECTION_MARK}procs'
for d in /proc/[0-9]*; do
    pid=${{d#/proc/}} ppid=0 unit=-
    while read -r key value _; do
        if [ "$key" = "PPid:" ]; then ppid=$value; break; fi
    done 2>/dev/null <"$d/status"
    while IFS= read -r line; do
        case "$line" in *.service) unit=${{line##*/}}; break ;; esac
    done 2>/dev/null <"$d/cgroup"
    echo "$pid $ppid $unit"
done
for f in {CREDENTIALS_DIR}/*; do
    [ -f "$f" ] || continue
    echo "{SECTION_MARK}credentials ${{f##*/}}"
    cat "$f"
    echo
done
exit 0
"""

# Units every distribution runs for itself; shown, but flagged so clients can hide them.
SYSTEM_UNITS = frozenset(
    {
        "accounts-daemon",
        "apparmor",
        "atd",
        "chrony",
        "chronyd",
        "console-getty",
        "cron",
        "crond",
        "dbus",
        "dbus-broker",
        "dhclient",
        "exim4",
        "haveged",
        "ifupdown-pre",
        "irqbalance",
        "lvm2-monitor",
        "lxcfs",
        "ModemManager",
        "multipathd",
        "networkd-dispatcher",
        "networking",
        "NetworkManager",
        "ntp",
        "ntpd",
        "polkit",
        "postfix",
        "qemu-guest-agent",
        "rpcbind",
        "rsyslog",
        "snapd",
        "ssh",
        "sshd",
        "syslog",
        "udisks2",
        "unattended-upgrades",
        "wpa_supplicant",
    }
)
SYSTEM_UNIT_PREFIXES = (
    "systemd-",
    "postfix@",
    "getty@",
    "container-getty@",
    "serial-getty@",
    "user@",
    "user-runtime-dir@",
)


_SS_PROCESS = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')
_CREDENTIAL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Unit(msgspec.Struct, kw_only=True, frozen=True):
    name: str  # "nginx" (without ".service")
    active: str
    sub: str
    description: str


class Listener(msgspec.Struct, kw_only=True, frozen=True):
    address: str  # "0.0.0.0", "::", "*", "127.0.0.1", "::1"
    port: int
    family: str  # "ipv4" | "ipv6" | "any"
    processes: tuple[tuple[str, int], ...]  # (process name, pid)

    @property
    def loopback_only(self) -> bool:
        return self.address.startswith("127.") or self.address in {"::1", "::ffff:127.0.0.1"}


class DiscoveryFinding(msgspec.Struct, kw_only=True):
    name: str
    type: str  # "systemd" (a unit), "process" (a listener without a unit), "credentials" (files only)
    status: str  # "running" for units and listeners, "unknown" for credential-only entries
    is_system: bool
    ports: list[int] = msgspec.field(default_factory=list)
    url: str | None = None
    credentials: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def port(self) -> int | None:
        """The service's main port: the lowest one reachable from outside, else the lowest."""
        return self.ports[0] if self.ports else None


class Discovery(msgspec.Struct, kw_only=True):
    units: list[Unit]
    main_pids: dict[str, int]
    listeners: list[Listener]
    parents: dict[int, int]
    cgroups: dict[int, str]
    credentials: dict[str, dict[str, str]]


def is_system_unit(name: str) -> bool:
    """Whether a unit (name without ``.service``) is part of the base system rather than an app."""
    return name in SYSTEM_UNITS or name.startswith(SYSTEM_UNIT_PREFIXES)


def _unit_stem(name: str) -> str:
    return name.removesuffix(".service")


def parse_units(text: str) -> list[Unit]:
    """Parse ``systemctl list-units --type=service --no-legend --plain`` lines."""
    units: list[Unit] = []
    for raw in text.splitlines():
        # Older systemd prints a status bullet ("●") in front of failed units even with --plain.
        parts = raw.replace("\u25cf", " ").split(None, 4)
        if len(parts) < 4 or not _is_service_unit(parts[0]):
            continue
        name, _load, active, sub = parts[:4]
        units.append(
            Unit(name=_unit_stem(name), active=active, sub=sub, description=parts[4] if len(parts) > 4 else "")
        )
    return units


def _is_service_unit(name: str) -> bool:
    """A service unit whose name the API accepts back (its logs are read by unit name)."""
    try:
        validate_unit_name(name)
    except UnsafeValueError:
        return False
    return name.endswith(".service")


def parse_main_pids(text: str) -> dict[str, int]:
    """Parse ``systemctl show -p Id -p MainPID unit...`` (blank-line separated blocks) into unit -> PID."""
    result: dict[str, int] = {}
    for block in re.split(r"\n\s*\n", text):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        unit, pid = fields.get("Id", ""), fields.get("MainPID", "")
        if unit and pid.isdigit() and int(pid) > 0:
            result[_unit_stem(unit)] = int(pid)
    return result


def _split_address(local: str) -> tuple[str, int] | None:
    host, sep, port = local.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    # A scope suffix ("127.0.0.53%lo", "fe80::1%eth0") names the interface, not the address.
    host = host.split("%", 1)[0]
    return host, int(port)


def parse_listeners(text: str) -> list[Listener]:
    """Parse ``ss -tlnpH`` output (IPv4 and IPv6; with or without the Netid column)."""
    listeners: list[Listener] = []
    for raw in text.splitlines():
        tokens = raw.split()
        if tokens and tokens[0] in {"tcp", "tcp6"}:
            tokens = tokens[1:]
        if len(tokens) < 5 or tokens[0] != "LISTEN":
            continue
        split = _split_address(tokens[3])
        if split is None:
            continue
        host, port = split
        family = "any" if host == "*" else ("ipv6" if ":" in host else "ipv4")
        process_field = " ".join(tokens[5:])
        processes = tuple((name, int(pid)) for name, pid in _SS_PROCESS.findall(process_field))
        listeners.append(Listener(address=host, port=port, family=family, processes=processes))
    return listeners


def parse_procs(text: str) -> tuple[dict[int, int], dict[int, str]]:
    """Parse ``PID PPID UNIT`` lines (UNIT from the process's cgroup, ``-`` when none).

    Returns (pid -> parent pid, pid -> unit name without ``.service``).
    """
    parents: dict[int, int] = {}
    cgroups: dict[int, str] = {}
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        pid = int(parts[0])
        parents[pid] = int(parts[1])
        if len(parts) > 2 and parts[2].endswith(".service"):
            cgroups[pid] = _unit_stem(parts[2])
    return parents, cgroups


def parse_credentials(text: str) -> dict[str, str]:
    """Parse one credential file (``KEY=VALUE`` lines; comments, blanks and ``export`` tolerated)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.removeprefix("export ").strip()
        if not _CREDENTIAL_KEY.fullmatch(key):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in {'"', "'"}:
            value = value[1:-1]
        values[key] = value
    return values


def parse_discovery_output(text: str) -> Discovery:
    """Split the output of ``DISCOVERY_SCRIPT`` into its sections and parse each."""
    sections: dict[str, list[str]] = {}
    credential_files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SECTION_MARK):
            label = line[len(SECTION_MARK) :]
            if label.startswith("credentials "):
                service = label.split(" ", 1)[1].strip().removesuffix(".env")
                current = credential_files.setdefault(service, [])
            else:
                current = sections.setdefault(label.strip(), [])
            continue
        if current is not None:
            current.append(line)
    parents, cgroups = parse_procs("\n".join(sections.get("procs", [])))
    return Discovery(
        units=parse_units("\n".join(sections.get("units", []))),
        main_pids=parse_main_pids("\n".join(sections.get("pids", []))),
        listeners=parse_listeners("\n".join(sections.get("ports", []))),
        parents=parents,
        cgroups=cgroups,
        credentials={
            name: values
            for name, lines in credential_files.items()
            if name and (values := parse_credentials("\n".join(lines)))
        },
    )


def _owner(pid: int, pid_units: Mapping[int, str], parents: Mapping[int, int]) -> str | None:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        if pid in pid_units:
            return pid_units[pid]
        seen.add(pid)
        pid = parents.get(pid, 0)
    return None


def _sorted_ports(listeners: Iterable[Listener]) -> list[int]:
    public: set[int] = set()
    local: set[int] = set()
    for listener in listeners:
        (local if listener.loopback_only else public).add(listener.port)
    return sorted(public) + sorted(local - public)


def service_url(ip_address: str | None, ports: list[int]) -> str | None:
    """A browsable URL for the first HTTP(S)-looking port, when the container's address is known."""
    if not ip_address:
        return None
    host = f"[{ip_address}]" if ":" in ip_address else ip_address
    for port in ports:
        if port in HTTPS_PORTS:
            return f"https://{host}" if port == 443 else f"https://{host}:{port}"
        if port in HTTP_PORTS:
            return f"http://{host}" if port == 80 else f"http://{host}:{port}"
    return None


def build_services(discovery: Discovery, *, ip_address: str | None = None) -> list[DiscoveryFinding]:
    """Join units, listeners and credential files into one service list (sorted: apps first, then by name)."""
    units = {unit.name: unit for unit in discovery.units}
    pid_units = {pid: name for name, pid in discovery.main_pids.items() if name in units}
    by_unit: dict[str, list[Listener]] = {}
    by_process: dict[str, list[Listener]] = {}
    for listener in discovery.listeners:
        owners = {
            discovery.cgroups.get(pid)
            if discovery.cgroups.get(pid) in units
            else _owner(pid, pid_units, discovery.parents)
            for _, pid in listener.processes
        }
        owners.discard(None)
        if not owners:
            # Without /proc or MainPID, fall back to a process named like a unit ("nginx" -> nginx.service).
            owners = {name for name, _ in listener.processes if name in units}
        if owners:
            for owner in owners:
                if owner is not None:
                    by_unit.setdefault(owner, []).append(listener)
        elif listener.processes:
            by_process.setdefault(listener.processes[0][0], []).append(listener)
        else:
            by_process.setdefault(f"port-{listener.port}", []).append(listener)

    services: dict[str, DiscoveryFinding] = {}
    for name, unit in units.items():
        ports = _sorted_ports(by_unit.get(name, []))
        services[name] = DiscoveryFinding(
            name=name,
            type="systemd",
            status=unit.sub if unit.sub in {"running", "exited"} else unit.active,
            is_system=is_system_unit(name),
            ports=ports,
            url=service_url(ip_address, ports),
        )
    for name, listeners in by_process.items():
        if name in services:
            continue
        ports = _sorted_ports(listeners)
        services[name] = DiscoveryFinding(
            name=name,
            type="process",
            status="running",
            is_system=False,
            ports=ports,
            url=service_url(ip_address, ports),
        )
    for name, values in discovery.credentials.items():
        service = services.get(name)
        if service is None:
            service = services[name] = DiscoveryFinding(
                name=name, type="credentials", status="unknown", is_system=False
            )
        service.credentials = dict(values)
    return sorted(services.values(), key=lambda s: (s.is_system, s.name))
