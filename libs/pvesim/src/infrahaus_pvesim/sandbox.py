"""Simulated containers: real directory trees where commands run under a real bash, confined.

Each container's root filesystem is a directory built from the skeleton in ``rootfs/`` plus a
static bash and a static busybox (with its applet symlinks). A command "inside" a container runs
as::

    unshare --map-users=100000,0,65536 --map-groups=100000,0,65536 --setuid 0 --setgid 0 \
        --mount --pid --net --ipc --uts --kill-child -- <pivot_root into the tree> <argv>

i.e. as root of a fresh user namespace whose root is host uid 100000 (it owns the tree and
nothing else), with the tree pivoted to / and the host's filesystem detached from its private
mount namespace, and its own PID, network, IPC and UTS namespaces. When
the subordinate id range is not available (no ``uidmap`` package, or no ``root:100000:...``
line in /etc/subuid and /etc/subgid) it falls back to ``--map-root-user``: still confined to the tree and
namespaced, but the tree is owned by the calling user. If neither works, `SandboxUnavailableError`
says why.

Simulated tools inside (``systemctl``, ``ss``, ``journalctl``, ``apt-get``/``apt``, ``dpkg-query``,
``pip``/``pip3``/``python3 -m pip``, ``npm``, ``node``, ``ip``, ``hostname``, ``useradd``,
``groupadd``, ``usermod``, ``chpasswd``, ``getent``, ``runuser``, ``sudo``) are shell scripts from
the skeleton that keep their state in files inside the container, so every effect of a command
lands in the tree and nowhere else:

- Units are real unit files (``/etc/systemd/system``, ``/lib/systemd/system``). A started service
  listens where ``X-Listen=[ADDR:]PORT`` keys in ``[Service]`` say, else on the ports of ExecStart
  options ``-p N``, ``--port N``, ``--port=N``, ``-l N``, ``--listen [ADDR:]N``; a bare port means
  0.0.0.0 and [::]. The first socket belongs to the MainPID, the second to a child PID; each PID has
  ``/proc/<pid>/{status,cgroup,comm,cmdline}`` files (there is no procfs). ssh (22), postfix (25 on
  localhost), cron and journald run from the start. Journal lines: ``/var/log/journal/<unit>.log``.
- apt: ``/var/lib/dpkg/status`` records packages. Failure switches, as files in the tree: a name
  starting with ``nonexistent`` or listed in ``/etc/sim/missing`` cannot be located (exit 100);
  ``/var/lib/dpkg/lock-frontend`` present (content "PID (name)") means the lock is held (exit
  100); ``/etc/sim/offline`` makes ``apt-get update`` fail to resolve the mirror; packages in
  ``/etc/sim/debconf-packages`` fail without ``DEBIAN_FRONTEND=noninteractive``. nginx,
  redis-server, postgresql and mariadb-server install files and start their services.
- pip follows PEP 668 on Debian 12 (needs ``--break-system-packages`` or
  ``PIP_BREAK_SYSTEM_PACKAGES=1``); pip and npm treat names starting with ``nonexistent`` as unknown.
- Addresses come from `set_network` (``/etc/sim/network``). /bin/sh is bash.
"""

import functools
import ipaddress
import os
import re
import shutil
import stat
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SKELETON = Path(__file__).with_name("rootfs")
# The image's own symlinks (unit aliases, apt -> apt-get ...): kept in a list because wheels cannot carry links.
SKELETON_LINKS = Path(__file__).with_name("rootfs.links")
STATIC_BASH = Path("/bin/bash-static")
STATIC_BUSYBOX = Path("/bin/busybox")
# glibc's C.UTF-8 locale as Debian's libc-bin installs it in every container: commands run with LC_ALL=C.UTF-8.
HOST_LOCALE = Path("/usr/lib/locale/C.utf8")
# Host uid/gid that is root inside every simulated container (Proxmox uses the same range).
CONTAINER_ROOT_ID = 100000
ID_COUNT = 65536
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Directories git cannot carry (empty) or that need special modes.
_DIRS: dict[str, int] = {
    "bin": 0o755,
    "sbin": 0o755,
    "lib": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "usr/lib": 0o755,
    "usr/local/bin": 0o755,
    "usr/local/sbin": 0o755,
    "usr/local/lib": 0o755,
    "usr/share": 0o755,
    "etc/systemd/system/multi-user.target.wants": 0o755,
    "home": 0o755,
    "root": 0o700,
    "tmp": 0o1777,
    "var/tmp": 0o1777,
    "var/log/journal": 0o755,
    "var/lib/sim/active": 0o755,
    "var/lib/sim/listen": 0o755,
    "var/lib/sim/pip": 0o755,
    "var/lib/dpkg": 0o755,
    "run": 0o755,
    "proc": 0o555,
    "dev": 0o755,
    "opt": 0o755,
    "srv": 0o755,
    "mnt": 0o755,
}

_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}

Confinement = Literal["subuid", "map-root"]


class SandboxUnavailableError(RuntimeError):
    """Commands cannot be confined on this machine (missing unshare or user namespaces)."""


@dataclass(frozen=True, kw_only=True)
class OsRelease:
    id: str
    version_id: str
    codename: str
    pretty_name: str
    # Python's PEP 668 marker: Debian 12+ and Ubuntu 23.04+ refuse system-wide `pip install`.
    externally_managed: bool


def _os_release_for(ostemplate: str) -> OsRelease:
    """Pick the distribution from a template volid such as ``local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst``."""
    name = ostemplate.rsplit("/", 1)[-1].lower()
    match = re.match(r"(debian|ubuntu)-(\d+(?:\.\d+)?)", name)
    family, version = match.groups() if match else ("debian", "12")
    if family == "ubuntu":
        codenames = {"20.04": "focal", "22.04": "jammy", "24.04": "noble"}
        codename = codenames.get(version, "noble")
        return OsRelease(
            id="ubuntu",
            version_id=version,
            codename=codename,
            pretty_name=f"Ubuntu {version} LTS",
            externally_managed=float(version) >= 23.04,
        )
    codenames = {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"}
    major = version.split(".")[0]
    return OsRelease(
        id="debian",
        version_id=major,
        codename=codenames.get(major, "bookworm"),
        pretty_name=f"Debian GNU/Linux {major} ({codenames.get(major, 'bookworm')})",
        externally_managed=int(major) >= 12,
    )


@functools.cache
def confinement() -> Confinement:
    """Detect once how commands can be confined here; raise `SandboxUnavailableError` with the reason."""
    if shutil.which("unshare") is None:
        raise SandboxUnavailableError("simulated containers need `unshare` (Debian package util-linux)")
    probe = ["--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "true"]
    full = subprocess.run(["unshare", *_id_map_options("subuid"), *probe], capture_output=True, check=False)
    if full.returncode == 0:
        return "subuid"
    fallback = subprocess.run(["unshare", *_id_map_options("map-root"), *probe], capture_output=True, check=False)
    if fallback.returncode == 0:
        return "map-root"
    raise SandboxUnavailableError(
        "cannot create a user namespace for simulated containers: "
        f"{full.stderr.decode(errors='replace').strip()} / {fallback.stderr.decode(errors='replace').strip()} "
        "(install `uidmap` and add `root:100000:1000000` to /etc/subuid and /etc/subgid, "
        "or enable unprivileged user namespaces)"
    )


def _id_map_options(mode: Confinement) -> list[str]:
    if mode == "subuid":
        mapping = f"{CONTAINER_ROOT_ID},0,{ID_COUNT}"
        return [f"--map-users={mapping}", f"--map-groups={mapping}", "--setuid=0", "--setgid=0"]
    return ["--map-root-user"]


def container_argv(rootfs: Path, argv: Sequence[str]) -> list[str]:
    """The host argv that runs ``argv`` inside the container rooted at ``rootfs`` (exec'd directly, no shell)."""
    return [
        "unshare",
        *_id_map_options(confinement()),
        "--mount",
        "--pid",
        "--net",
        "--ipc",
        "--uts",
        "--kill-child",
        # unshare changes directory before it drops to the namespace's uid, so parents that only
        # the host's root may traverse (pytest's 0700 temp dirs) do not matter.
        f"--wd={rootfs}",
        "--",
        str(STATIC_BUSYBOX),
        "sh",
        "-c",
        _ENTER,
        "enter",
        *argv,
    ]


# Runs as the namespace's root in a private mount namespace, in the tree's directory. The tree is
# bind-mounted over /tmp (of this namespace only: a path the namespace's root can reach), and
# pivot_root (not chroot, which the container's root could undo) makes it the only filesystem
# left; the host's is detached. The namespace's own procfs goes to /dev/.proc, only to back
# /dev/fd (bash's process substitution): /proc keeps the simulated per-service PID files.
# Then bash, not busybox sh (which prefers its applets over the simulated tools on PATH), sets
# the UTS hostname from /etc/hostname and execs the command.
_ENTER = (
    "mount --rbind . /tmp && cd /tmp && mount -t proc proc dev/.proc && pivot_root . . && umount -l . && cd / "
    "|| exit 125; "
    'exec /bin/bash -c \'/bin/busybox hostname -F /etc/hostname 2>/dev/null; exec "$@"\' bash "$@"'
)


def container_env() -> dict[str, str]:
    """The environment a command starts with inside a container (what `pct exec` gives: no host variables)."""
    return {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", "container": "lxc"}


@functools.cache
def _busybox_applets() -> tuple[str, ...]:
    listed = subprocess.run([str(STATIC_BUSYBOX), "--list"], capture_output=True, check=True, text=True)
    return tuple(line for line in listed.stdout.split() if line and "/" not in line)


def _image_binaries(node_dir: Path) -> dict[str, Path]:
    """Per-node links to (or copies of) the static binaries, owned by the host's root so containers
    cannot modify them. Containers hard-link them: a fleet of hundreds shares two inodes.
    """
    image = node_dir / ".image"
    image.mkdir(parents=True, exist_ok=True)
    binaries = {"bash": STATIC_BASH, "busybox": STATIC_BUSYBOX}
    out: dict[str, Path] = {}
    for name, source in binaries.items():
        if not source.exists():
            raise SandboxUnavailableError(f"{source} is missing (Debian packages bash-static and busybox-static)")
        target = image / name
        if not target.exists():
            # A name of its own per call: concurrent first creations on a node each replace the target atomically
            # (a shared temporary name let one of them rename a file the other had already moved).
            tmp = image / f".{name}.{uuid.uuid4().hex}.tmp"
            _link_or_copy(source, tmp)
            tmp.replace(target)
        out[name] = target
    return out


def _image_locale(node_dir: Path) -> list[tuple[Path, Path]]:
    """The C.UTF-8 locale files, copied once per node beside the binaries: (file in the image, path in a container)."""
    if not HOST_LOCALE.is_dir():
        return []
    image = node_dir / ".image" / "locale"
    pairs: list[tuple[Path, Path]] = []
    for source in sorted(p for p in HOST_LOCALE.rglob("*") if p.is_file()):
        relative = source.relative_to(HOST_LOCALE)
        target = image / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            _link_or_copy(source, tmp)
            tmp.replace(target)
        pairs.append((target, Path("usr/lib/locale/C.utf8") / relative))
    return pairs


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _make_skeleton_links(rootfs: Path) -> None:
    for line in SKELETON_LINKS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        rel, target = line.split()
        link = rootfs / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)


def create_rootfs(node_dir: Path, vmid: int, ostemplate: str, *, hostname: str | None = None) -> Path:
    """Build the root filesystem of container ``vmid`` under ``node_dir`` and return its path.

    The distribution (``/etc/os-release``, PEP 668 marker) follows ``ostemplate``. An existing tree
    for the same vmid is replaced. The tree is owned by the container's root (host uid 100000).
    """
    rootfs = node_dir / "containers" / str(vmid)
    if rootfs.exists():
        destroy_rootfs(rootfs)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    mode = confinement()
    binaries = _image_binaries(node_dir)
    shutil.copytree(SKELETON, rootfs, symlinks=True)
    _make_skeleton_links(rootfs)
    for rel, perms in _DIRS.items():
        path = rootfs / rel
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(perms)
    # git keeps only 644/755.
    (rootfs / "etc" / "shadow").chmod(0o640)
    for name, source in binaries.items():
        _link_or_copy(source, rootfs / "bin" / name)
    locale = _image_locale(node_dir)
    for source, relative in locale:
        (rootfs / relative).parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(source, rootfs / relative)
    bin_dir = rootfs / "bin"
    # /bin/sh is bash (Debian's is dash): busybox sh would run its own applets instead of the
    # simulated tools (`hostname`, `ip` ...) found on PATH.
    (bin_dir / "sh").symlink_to("bash")
    for applet in _busybox_applets():
        link = bin_dir / applet
        # Debian's /bin is /usr/bin (merged /usr): a simulated tool in /usr/{s,}bin must win whatever the PATH order
        # (pct exec forces PATH=/sbin:/bin:/usr/sbin:/usr/bin), so no busybox applet may shadow it from /bin.
        tools = (rootfs / "usr" / "bin" / applet, rootfs / "usr" / "sbin" / applet)
        if not os.path.lexists(link) and not any(os.path.lexists(tool) for tool in tools):
            link.symlink_to("busybox")
    _make_devices(rootfs / "dev")
    release = _os_release_for(ostemplate)
    _write_os_release(rootfs, release)
    (rootfs / "etc" / "hostname").write_text(f"{hostname or f'CT{vmid}'}\n")
    if mode == "subuid":
        shared = {os.stat(path).st_ino for path in [*binaries.values(), *(source for source, _ in locale)]}
        _chown_tree(rootfs, CONTAINER_ROOT_ID, skip_inodes=shared)
    return rootfs


def _make_devices(dev: Path) -> None:
    """Character devices scripts expect (/dev/null ...). Only the host's root may create them;
    otherwise a redirect to /dev/null just makes a regular file inside the tree."""
    (dev / ".proc").mkdir()
    (dev / "fd").symlink_to("/dev/.proc/self/fd")
    # As in an unprivileged LXC container reached with `pct exec`, reopening the host-created pipes
    # behind these (`> /dev/stderr`) is denied to the container's root; `>&2` works.
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        (dev / name).symlink_to(f"/dev/fd/{number}")
    if os.geteuid() != 0:
        return
    for name, (major, minor) in _DEVICES.items():
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        (dev / name).chmod(0o666)


def _write_os_release(rootfs: Path, release: OsRelease) -> None:
    etc = rootfs / "etc"
    name = "Ubuntu" if release.id == "ubuntu" else "Debian GNU/Linux"
    lines = [
        f'PRETTY_NAME="{release.pretty_name}"',
        f'NAME="{name}"',
        f'VERSION_ID="{release.version_id}"',
        f'VERSION="{release.version_id} ({release.codename})"',
        f"VERSION_CODENAME={release.codename}",
        f"ID={release.id}",
    ]
    if release.id == "ubuntu":
        lines.append("ID_LIKE=debian")
    (etc / "os-release").write_text("\n".join(lines) + "\n")
    (etc / "debian_version").write_text(f"{release.codename}/sid\n" if release.id == "ubuntu" else "12.7\n")
    marker = rootfs / "usr" / "lib" / "python3.11" / "EXTERNALLY-MANAGED"
    if release.externally_managed:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("[externally-managed]\nError=To install Python packages system-wide, try apt install\n")
    (etc / "sim").mkdir(exist_ok=True)
    (etc / "sim" / "codename").write_text(f"{release.codename}\n")


def _chown_tree(root: Path, uid: int, *, skip_inodes: set[int]) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, uid, uid)
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            if os.lstat(path).st_ino in skip_inodes:
                continue
            os.lchown(path, uid, uid)


def destroy_rootfs(path: Path) -> None:
    """Remove a container's tree (symlinks inside are removed, never followed). Missing is fine."""
    if not path.exists():
        return
    if not (path / "etc" / "sim").is_dir():
        raise ValueError(f"{path} is not a simulated container root filesystem")
    shutil.rmtree(path)


def set_network(rootfs: Path, ipv4: str | None, ipv6: str | None) -> None:
    """Record the container's addresses (CIDR or bare address) for `ip addr`, `hostname -I` and `/etc/hosts`.

    The HTTP side calls this when the container starts, with the addresses it reports through
    ``/lxc/{vmid}/interfaces``.
    """
    lines = []
    if ipv4:
        iface4 = ipaddress.IPv4Interface(ipv4 if "/" in ipv4 else f"{ipv4}/24")
        lines += [
            f"IPV4={iface4.with_prefixlen}",
            f"IPV4_BROADCAST={iface4.network.broadcast_address}",
            f"IPV4_GATEWAY={next(iter(iface4.network.hosts()))}",
        ]
    if ipv6:
        iface6 = ipaddress.IPv6Interface(ipv6 if "/" in ipv6 else f"{ipv6}/64")
        lines.append(f"IPV6={iface6.with_prefixlen}")
    target = rootfs / "etc" / "sim" / "network"
    target.write_text("".join(f"{line}\n" for line in lines))
    if confinement() == "subuid":
        os.lchown(target, CONTAINER_ROOT_ID, CONTAINER_ROOT_ID)


def snapshot_dir(node_dir: Path, vmid: int, name: str) -> Path:
    """Where the copy of container ``vmid``'s tree for snapshot ``name`` lives (beside the container trees)."""
    return node_dir / "snapshots" / str(vmid) / name


def copy_tree(source: Path, target: Path) -> None:
    """A real copy of a container tree (owners, modes, links and hard links kept): what a storage snapshot holds.

    ``cp -a`` rather than hard links, which would share the files the container goes on changing."""
    if target.exists():
        destroy_rootfs(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--", str(source), str(target)], check=True, capture_output=True)


def restore_tree(snapshot: Path, rootfs: Path) -> None:
    """Put a snapshot's copy back as the container's tree (the snapshot keeps its own copy)."""
    destroy_rootfs(rootfs)
    copy_tree(snapshot, rootfs)
