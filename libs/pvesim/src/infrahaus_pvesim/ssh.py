"""The simulated node's SSH server: `pct exec|push|set|unlock|status` against sandboxed containers.

The command line a client sends is split with `shlex.split` and dispatched in Python; it never
reaches a host shell. Supported, as on a Proxmox node reached as root (pve-container ``src/PVE/CLI/pct.pm``):

- ``pct exec <vmid> [--keep-env 0|1] -- <argv...>``: runs argv inside the container's sandbox (see `sandbox`),
  streaming stdout and stderr as they come, with the child's exit status. Checks, in PVE's order: the config
  exists, the container runs (``container '<vmid>' not running!``), a command is given. With ``--keep-env`` (the
  default) the SSH session's environment reaches the container, PATH forced to ``/sbin:/bin:/usr/sbin:/usr/bin``.
- ``pct push <vmid> <src> <dst> [--perms MODE] [--user U] [--group G]``: takes the config file lock (10 s), refuses a
  stopped container (``can only push files to a running CT``), then writes the file as the container's root.
  Failures inside that worker (source unreadable, unknown user, missing directory) are printed on stderr and the
  command still exits 0, as pct does; without ``--perms`` a new file gets 0644 and an existing one keeps its mode.
- ``pct set <vmid> --features k=v,... / --<option> v / --delete k``: PUT …/config as root@pam (file lock, lock check,
  pending changes on a running container), ``pct unlock`` (``no lock found trying to remove any lock``),
  ``pct status``, ``pct config``, ``pct list``.
- Host commands the pct runner needs, implemented in Python inside a per-node jail directory
  (never the real host): ``mktemp``, ``chmod``, ``rm``, ``cat``, ``dd of=``, ``true``.
- A leading ``timeout [-k DUR] [-s SIG] DUR`` limits any of these (exit 124, as coreutils).

Anything else answers bash's "command not found" with exit 127. A command whose channel closes
(client gone, connection dropped) has its process tree killed. Faults: `NodeFaults.unreachable`
closes the listening socket (connection refused) and drops open connections; `blackhole`
accepts TCP and never answers; `ssh_drop_after` aborts the connection that many seconds into
each command; `latency` delays every command; `corrupt_next_push` makes a push write a short file silently.
"""

import asyncio
import contextlib
import hmac
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import string
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

from infrahaus_pvesim import guests, sandbox
from infrahaus_pvesim.faults import NodeFaults
from infrahaus_pvesim.http.common import ApiError
from infrahaus_pvesim.http.lxc import apply_config_update
from infrahaus_pvesim.state import SimGuest, SimNode
from infrahaus_pvesim.tasks import LockTimeout, TaskRunner

log = logging.getLogger(__name__)

Process = asyncssh.SSHServerProcess[bytes]
_FEATURE_FLAGS = {"nesting", "keyctl", "fuse", "mknod", "force_rw_sys"}
# Plain `pct set` options (the HTTP API validates the rest of the config).
_SET_OPTIONS = {
    "hostname",
    "memory",
    "swap",
    "cores",
    "onboot",
    "description",
    "nameserver",
    "searchdomain",
    "tags",
    "lock",
}
# What pct's CLI handler forces (pve-common CLIHandler.pm run_cli_handler).
_PCT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
_TIMEOUT_EXIT = 124
_PCT_USAGE = "USAGE: pct <COMMAND> [ARGS] [OPTIONS]"


class _CommandError(Exception):
    """A command failed the way the real tool would: message for stderr, and its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class SshHost:
    """The SSH side of one simulated node (see the module docstring)."""

    def __init__(
        self,
        node: SimNode,
        *,
        host: str,
        port: int,
        host_key_path: Path,
        users: dict[str, str],
        faults: NodeFaults,
        tasks: TaskRunner,
    ) -> None:
        self._node = node
        self._tasks = tasks
        self._host = host
        self._port = port
        self._users = dict(users)
        self._faults = faults
        self._host_key = _load_or_create_host_key(host_key_path)
        self.authorized_keys: dict[str, list[str]] = {}
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._held: set[socket.socket] = set()
        self._jail: Path | None = None
        self._jail_root = host_key_path.parent / "ssh-host-root"
        faults.on_reachability_change(self._reachability_changed)

    @property
    def public_key(self) -> str:
        """The host key as an OpenSSH public key line (``ssh-ed25519 AAAA...``), to pin."""
        line: bytes = self._host_key.export_public_key("openssh")
        return " ".join(line.decode().split()[:2])

    @property
    def port(self) -> int:
        return self._port

    @property
    def host_dir(self) -> Path:
        """The jail standing in for the node's own filesystem (host commands and `pct push` sources)."""
        if self._jail is None:
            raise RuntimeError("SSH host is not started")
        return self._jail

    def authorize_key(self, username: str, public_key: str) -> None:
        """Accept public-key logins of ``username`` with this OpenSSH public key line."""
        self.authorized_keys.setdefault(username, []).append(" ".join(public_key.split()[:2]))

    async def start(self) -> int:
        """Listen and return the bound port (chosen by the OS when configured as 0)."""
        sandbox.confinement()
        if self._jail is None:
            # Next to the host key, in the node's own directory; whatever a crash left there goes.
            jail = self._jail_root
            shutil.rmtree(jail, ignore_errors=True)
            jail.mkdir(mode=0o755, parents=True)
            self._jail = jail
            for sub in ("tmp", "root", "var/tmp"):
                (self._jail / sub).mkdir(parents=True, exist_ok=True)
            (self._jail / "tmp").chmod(0o1777)
        if not self._faults.unreachable:
            self._open_listener()
        return self._port

    async def stop(self) -> None:
        """Stop listening, drop every connection (killing running commands) and remove the jail."""
        self._close_listener()
        self.drop_connections()
        # Let running commands notice the closed channels and kill their process trees.
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=10)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        for sock in self._held:
            sock.close()
        self._held.clear()
        if self._jail is not None:
            shutil.rmtree(self._jail, ignore_errors=True)
            self._jail = None

    def drop_connections(self) -> None:
        """Abort every open SSH connection at once, as a node reboot or a network cut would."""
        for conn in list(self._connections):
            conn.abort()

    # ------------------------------------------------------------------ listening

    def _open_listener(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(128)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        self._listener = sock
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop(sock))

    def _close_listener(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
            self._accept_task = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _reachability_changed(self, unreachable: bool) -> None:
        if unreachable:
            self._close_listener()
            self.drop_connections()
        elif self._jail is not None and self._listener is None:
            self._open_listener()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            if self._faults.blackhole:
                self._held.add(sock)
                continue
            task = loop.create_task(self._serve(sock))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await asyncssh.run_server(
                sock,
                server_factory=lambda: _Server(self),
                server_host_keys=[self._host_key],
                process_factory=self._handle,
                encoding=None,
                login_timeout=30,
                keepalive_interval=0,
            )
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            log.debug("ssh connection ended during handshake: %s", exc)

    # ------------------------------------------------------------------ commands

    async def _handle(self, process: Process) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        conn = process.get_extra_info("connection")
        drop_timer: asyncio.TimerHandle | None = None
        if self._faults.ssh_drop_after is not None:
            drop_timer = asyncio.get_running_loop().call_later(self._faults.ssh_drop_after, conn.abort)
        code = 255
        try:
            if self._faults.latency > 0:
                await asyncio.sleep(self._faults.latency)
            code = await self._dispatch(process, process.command or "")
        except _CommandError as exc:
            _write(process, exc.message, stderr=True)
            code = exc.exit_code
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            return
        except Exception as exc:
            # A simulator bug must end the command (not hang the client) and stay visible.
            log.exception("pvesim ssh: command failed: %s", process.command)
            with contextlib.suppress(OSError, asyncssh.Error):
                _write(process, f"pvesim: internal error ({type(exc).__name__})", stderr=True)
            code = 255
        finally:
            if drop_timer is not None:
                drop_timer.cancel()
        with contextlib.suppress(OSError, asyncssh.Error):
            process.exit(code)

    async def _dispatch(self, process: Process, command: str) -> int:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise _CommandError(f"bash: -c: line 1: syntax error: {exc}", 2) from exc
        if not argv:
            return 0
        limit: float | None = None
        if argv[0] == "timeout":
            limit, argv = _parse_timeout(argv[1:])
        run = self._command(process, argv)
        if limit is None:
            return await run
        try:
            return await asyncio.wait_for(run, limit)
        except TimeoutError:
            return _TIMEOUT_EXIT

    def _command(self, process: Process, argv: list[str]) -> Awaitable[int]:
        name, args = argv[0], argv[1:]
        handlers: dict[str, Callable[[Process, list[str]], Awaitable[int]]] = {
            "pct": self._pct,
            "mktemp": self._host_mktemp,
            "chmod": self._host_chmod,
            "rm": self._host_rm,
            "cat": self._host_cat,
            "dd": self._host_dd,
            "true": _true,
        }
        handler = handlers.get(name)
        if handler is None:
            raise _CommandError(f"bash: line 1: {name}: command not found", 127)
        return handler(process, args)

    # ------------------------------------------------------------------ pct

    async def _pct(self, process: Process, args: list[str]) -> int:
        if not args:
            raise _CommandError(f"ERROR: no command specified\n{_PCT_USAGE}", 255)
        sub, rest = args[0], args[1:]
        if sub == "exec":
            return await self._pct_exec(process, rest)
        if sub == "push":
            return await self._pct_push(process, rest)
        if sub == "set":
            return await self._pct_set(process, rest)
        if sub == "unlock":
            return await self._pct_unlock(rest)
        if sub == "status":
            guest = self._guest(rest)
            _write(process, f"status: {guest.status}")
            return 0
        if sub == "config":
            guest = self._guest(rest)
            config = guests.read_config(guest, current="--current" in rest[1:])
            config.pop("digest", None)
            _write(process, "\n".join(f"{key}: {value}" for key, value in sorted(config.items())))
            return 0
        if sub == "list":
            rows = [f"{'VMID':<10} {'Status':<10} {'Lock':<12} Name"]
            for vmid, guest in sorted(self._node.guests.items()):
                if guest.type == "lxc":
                    name = guest.visible_config().get("hostname", "")
                    rows.append(f"{vmid:<10} {guest.status:<10} {guest.lock or '':<12} {name}")
            _write(process, "\n".join(rows))
            return 0
        raise _CommandError(f"ERROR: unknown command 'pct {sub}'\n{_PCT_USAGE}", 255)

    def _guest(self, args: list[str]) -> SimGuest:
        if not args or not args[0].isdigit():
            raise _CommandError("400 not enough arguments\npct <command> <vmid> ...", 255)
        vmid = int(args[0])
        guest = self._node.guests.get(vmid)
        if guest is None or guest.type != "lxc":
            # A Perl die after the failed open: the exit status is errno (ENOENT).
            raise _CommandError(f"Configuration file '{self._node.config_path(vmid)}' does not exist", 2)
        return guest

    async def _pct_exec(self, process: Process, args: list[str]) -> int:
        guest = self._guest(args)
        rest = args[1:]
        keep_env = True
        while rest and rest[0].startswith("--keep-env"):
            _name, eq, value = rest[0].partition("=")
            if not eq:
                value = rest[1] if len(rest) > 1 else ""
                rest = rest[1:]
            keep_env = value != "0"
            rest = rest[1:]
        if rest and rest[0] == "--":
            rest = rest[1:]
        if guest.status != "running" or guest.rootfs is None:
            raise _CommandError(f"container '{guest.vmid}' not running!", 255)
        if not rest:
            raise _CommandError("missing command", 255)
        env = self._session_env(process) if keep_env else {"PATH": sandbox.CONTAINER_PATH, "container": "lxc"}
        argv = sandbox.container_argv(guest.rootfs, rest)
        return await _run_child(process, argv, stdin_from_client=True, env=env, guest=guest)

    @staticmethod
    def _session_env(process: Process) -> dict[str, str]:
        """What `lxc-attach --keep-env` passes in: the SSH session's environment (sshd's variables, the locale PAM
        sets from /etc/default/locale, whatever the client sent), with PATH forced by pct."""
        peer = process.get_extra_info("peername") or ("127.0.0.1", 0)
        local = process.get_extra_info("sockname") or ("127.0.0.1", 22)
        env = {
            "USER": "root",
            "LOGNAME": "root",
            "HOME": "/root",
            "SHELL": "/bin/bash",
            "MAIL": "/var/mail/root",
            "LANG": "en_US.UTF-8",
            "SSH_CLIENT": f"{peer[0]} {peer[1]} {local[1]}",
            "SSH_CONNECTION": f"{peer[0]} {peer[1]} {local[0]} {local[1]}",
            "container": "lxc",
        }
        sent = process.env or {}
        env.update({str(k): str(v) for k, v in sent.items()})
        env["PATH"] = _PCT_PATH
        return env

    async def _pct_push(self, process: Process, args: list[str]) -> int:
        positional, options = _split_options(args, {"perms", "user", "group"})
        if len(positional) != 3:
            raise _CommandError("400 wrong number of arguments\npct push <vmid> <file> <destination> [OPTIONS]", 255)
        guest = self._guest(positional)
        src, dst = positional[1], positional[2]
        try:
            async with self._tasks.config_lock(guest.vmid):
                if guest.status != "running" or guest.rootfs is None:
                    raise _CommandError("can only push files to a running CT", 255)
                return await self._push_worker(process, guest.rootfs, guest.vmid, src, dst, options)
        except LockTimeout as exc:
            raise _CommandError(str(exc), 255) from None

    async def _push_worker(
        self, process: Process, rootfs: Path, vmid: int, src: str, dst: str, options: dict[str, str]
    ) -> int:
        """The `push_file` worker: every failure goes to stderr and the command exits 0 (pct has no result check)."""
        try:
            source = self._jail_path(src)
            content = source.read_bytes()
        except (OSError, _CommandError):
            _write(process, f"failed to open {src} for reading", stderr=True)
            return 0
        perms = options.get("perms")
        mode = ""
        if perms is not None:
            text = perms if perms.lower().startswith("0x") or perms.startswith("0") else f"0{perms}"
            try:
                mode = f"{int(text, 16) if text.lower().startswith('0x') else int(text, 8):o}"
            except ValueError:
                _write(process, f"invalid mode: '{perms}'", stderr=True)
                return 0
        if vmid in self._faults.corrupting_push:
            # File::Copy::copy's failure (ENOSPC, EIO) is ignored: a short file, no message, exit 0.
            self._faults.corrupting_push.discard(vmid)
            content = content[: len(content) // 2]
        owner = [options.get("user", ""), options.get("group", "")]
        argv = sandbox.container_argv(rootfs, ["/bin/bash", "-c", _PUSH_SCRIPT, "push_file", dst, mode, *owner])
        result = await _run_capture(argv, content)
        if result:
            _write(process, result, stderr=True)
        return 0

    async def _pct_set(self, process: Process, args: list[str]) -> int:
        positional, options = _split_options(args, {*_SET_OPTIONS, "features", "delete"})
        guest = self._guest(positional)
        if "features" in options:
            options["features"] = _validate_features(options["features"])
        params = {k: v for k, v in options.items() if k != "delete"}
        delete = guests.split_list(options.get("delete", ""))
        try:
            async with self._tasks.config_lock(guest.vmid):
                if guest.lock:
                    raise _CommandError(f"CT is locked ({guest.lock})", 255)
                apply_config_update(self._node, guest, params, delete, [])
        except LockTimeout as exc:
            raise _CommandError(str(exc), 255) from None
        except ApiError as exc:
            detail = "".join(f"\n{k}: {v}" for k, v in (exc.errors or {}).items())
            raise _CommandError(f"{exc.message}{detail}", 255) from None
        return 0

    async def _pct_unlock(self, args: list[str]) -> int:
        guest = self._guest(args)
        try:
            async with self._tasks.config_lock(guest.vmid):
                if guest.lock is None:
                    raise _CommandError("no lock found trying to remove any lock", 255)
                self._faults.unlock(guest.vmid)
        except LockTimeout as exc:
            raise _CommandError(str(exc), 255) from None
        return 0

    # ------------------------------------------------------------------ host commands (in the jail)

    def _jail_path(self, path: str) -> Path:
        # normpath of an absolute path drops any ".." above "/", so the result stays inside the jail.
        absolute = os.path.normpath(path if path.startswith("/") else f"/root/{path}")
        resolved = (self.host_dir / absolute.lstrip("/")).resolve()
        if resolved != self.host_dir.resolve() and self.host_dir.resolve() not in resolved.parents:
            raise _CommandError(f"{path}: Permission denied", 1)
        return resolved

    def _host_view(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.host_dir.resolve()))

    async def _host_mktemp(self, process: Process, args: list[str]) -> int:
        positional, options = _split_options(args, {"tmpdir", "p"}, flags={"d", "directory", "q", "quiet", "u"})
        template = positional[0] if positional else "tmp.XXXXXXXXXX"
        base = options.get("tmpdir", options.get("p", "/tmp"))  # noqa: S108 - the node's /tmp, inside the jail
        if "/" not in template:
            template = f"{base.rstrip('/')}/{template}"
        match = re.search(r"X{3,}$", template)
        if match is None:
            raise _CommandError(f"mktemp: too few X's in template '{template}'", 1)
        alphabet = string.ascii_letters + string.digits
        filled = template[: match.start()] + "".join(secrets.choice(alphabet) for _ in match.group())
        target = self._jail_path(filled)
        if "d" in options or "directory" in options:
            target.mkdir(mode=0o700)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _write(process, self._host_view(target))
        return 0

    async def _host_chmod(self, process: Process, args: list[str]) -> int:
        if len(args) < 2 or not re.fullmatch(r"[0-7]{1,4}", args[0]):
            raise _CommandError("chmod: this host only supports numeric modes: chmod MODE FILE...", 1)
        for name in args[1:]:
            path = self._jail_path(name)
            if not path.exists():
                raise _CommandError(f"chmod: cannot access '{name}': No such file or directory", 1)
            path.chmod(int(args[0], 8))
        return 0

    async def _host_rm(self, process: Process, args: list[str]) -> int:
        force = any(arg.startswith("-") and "f" in arg for arg in args)
        code = 0
        for name in (arg for arg in args if not arg.startswith("-")):
            path = self._jail_path(name)
            try:
                path.unlink()
            except FileNotFoundError:
                if not force:
                    _write(process, f"rm: cannot remove '{name}': No such file or directory", stderr=True)
                    code = 1
            except IsADirectoryError:
                _write(process, f"rm: cannot remove '{name}': Is a directory", stderr=True)
                code = 1
        return code

    async def _host_cat(self, process: Process, args: list[str]) -> int:
        if len(args) == 2 and args[0] == ">":
            return await self._receive_into(process, self._jail_path(args[1]))
        for name in args:
            path = self._jail_path(name)
            if not path.is_file():
                raise _CommandError(f"cat: {name}: No such file or directory", 1)
            process.stdout.write(path.read_bytes())
        return 0

    async def _host_dd(self, process: Process, args: list[str]) -> int:
        operands = dict(arg.split("=", 1) for arg in args if "=" in arg)
        if "of" not in operands or "if" in operands:
            raise _CommandError("dd: this host only supports `dd of=FILE [bs=N] [status=none]`", 1)
        return await self._receive_into(process, self._jail_path(operands["of"]))

    async def _receive_into(self, process: Process, target: Path) -> int:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as out:
            while chunk := await process.stdin.read(65536):
                out.write(chunk)
        return 0


class _Server(asyncssh.SSHServer):
    def __init__(self, host: SshHost) -> None:
        self._host = host
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._host._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._host._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._host._users.get(username)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        line = " ".join(key.export_public_key("openssh").decode().split()[:2])
        return line in self._host.authorized_keys.get(username, [])


def _load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The node's host key, generated once and kept so pinned keys stay valid across restarts."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key("openssh"))
    tmp.replace(path)
    return key


def _write(process: Process, text: str, *, stderr: bool = False) -> None:
    stream = process.stderr if stderr else process.stdout
    stream.write(text.encode() + b"\n")


async def _true(process: Process, args: list[str]) -> int:
    return 0


def _parse_timeout(args: list[str]) -> tuple[float, list[str]]:
    """Parse coreutils `timeout [-k DUR] [-s SIG] [--foreground] DURATION COMMAND...`."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        opt = rest.pop(0)
        if opt in ("-k", "--kill-after", "-s", "--signal") and rest:
            rest.pop(0)
    if len(rest) < 2:
        raise _CommandError("timeout: missing operand\nTry 'timeout --help' for more information.", 125)
    duration = rest[0]
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    scale = units.get(duration[-1], 1.0)
    try:
        seconds = float(duration.rstrip("smhd")) * scale
    except ValueError as exc:
        raise _CommandError(f"timeout: invalid time interval '{duration}'", 125) from exc
    return seconds, rest[1:]


def _split_options(
    args: list[str], valued: set[str], *, flags: frozenset[str] | set[str] = frozenset()
) -> tuple[list[str], dict[str, str]]:
    """Split ``--name value``/``--name=value``/``-p value`` options (and value-less flags) from positionals."""
    positional: list[str] = []
    options: dict[str, str] = {}
    items = list(args)
    while items:
        item = items.pop(0)
        if item.startswith("-") and item != "-":
            name, eq, value = item.lstrip("-").partition("=")
            if name in flags:
                options[name] = ""
                continue
            if name not in valued:
                raise _CommandError(f"Unknown option: {name}\n400 unable to parse option", 255)
            if not eq:
                if not items:
                    raise _CommandError(f"400 Parameter verification failed.\n{name}: missing value", 255)
                value = items.pop(0)
            options[name] = value
        else:
            positional.append(item)
    return positional, options


def _validate_features(value: str) -> str:
    for part in filter(None, value.split(",")):
        key, _, flag = part.partition("=")
        if key == "mount":
            continue
        if key not in _FEATURE_FLAGS:
            raise _CommandError(
                "400 Parameter verification failed.\nfeatures: invalid format - "
                f"format error\nfeatures.{key}: property is not defined in schema and the schema does not allow "
                "additional properties",
                255,
            )
        if flag not in ("0", "1"):
            raise _CommandError(
                f"400 Parameter verification failed.\nfeatures: invalid format - format error\n"
                f"features.{key}: type check ('boolean') failed - got '{flag}'",
                255,
            )
    return value


# pct.pm create_file, run as the container's root: resolve owner names in the container's /etc/passwd and
# /etc/group, create (or truncate) the file, chmod only with --perms (a new file otherwise gets 0666 & ~022),
# chown only what was given; then copy the content from stdin. Prints pct's message on failure.
_PUSH_SCRIPT = r"""
dst=$1 mode=$2 user=$3 group=$4
id_of() { case $2 in *[!0-9]*) awk -F: -v n="$2" '$1 == n { print $3; exit }' "$1" ;; *) echo "$2" ;; esac; }
uid= gid=
if [ -n "$user" ]; then
  uid=$(id_of /etc/passwd "$user"); [ -n "$uid" ] || { echo "failed to get uid for: $user"; exit; }
fi
if [ -n "$group" ]; then
  gid=$(id_of /etc/group "$group"); [ -n "$gid" ] || { echo "failed to get gid for: $group"; exit; }
fi
parent=$(dirname -- "$dst")
if [ ! -d "$parent" ]; then echo "failed to create file: $dst: No such file or directory"; exit; fi
if [ -d "$dst" ]; then echo "failed to create file: $dst: Is a directory"; exit; fi
[ -e "$dst" ] || { umask 022; : > "$dst"; } || { echo "failed to create file: $dst: Permission denied"; exit; }
[ -z "$mode" ] || chmod "$mode" "$dst"
if [ -n "$uid" ] || [ -n "$gid" ]; then chown "$uid${gid:+:$gid}" "$dst" || echo "failed to change file owner"; fi
cat > "$dst"
"""


async def _run_capture(argv: list[str], stdin: bytes) -> str:
    """Run a host process with ``stdin``; its stdout and stderr, stripped."""
    child = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=sandbox.container_env(),
        start_new_session=True,
    )
    try:
        out, _ = await child.communicate(stdin)
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            await child.wait()
    return out.decode(errors="replace").strip()


async def _finish(work: list["asyncio.Task[None]"], child: asyncio.subprocess.Process) -> None:
    await asyncio.gather(*work)
    await child.wait()


async def _run_child(
    process: Process,
    argv: list[str],
    *,
    stdin_from_client: bool = False,
    env: dict[str, str] | None = None,
    guest: SimGuest | None = None,
) -> int:
    """Run a host process, relay its output as it comes and kill its whole tree if the channel closes (or, for a
    command inside ``guest``, when the container stops)."""
    child = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin_from_client else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else sandbox.container_env(),
        start_new_session=True,
    )
    if guest is not None:
        guest.processes.add(child.pid)
    assert child.stdout is not None
    assert child.stderr is not None

    async def relay(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while chunk := await source.read(65536):
            sink.write(chunk)
            # Respect the SSH window: a slow client slows the command instead of filling memory.
            await sink.drain()

    async def feed() -> None:
        assert child.stdin is not None
        try:
            while chunk := await process.stdin.read(65536):
                child.stdin.write(chunk)
                await child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
            pass
        finally:
            child.stdin.close()

    work = [
        asyncio.ensure_future(relay(child.stdout, process.stdout)),
        asyncio.ensure_future(relay(child.stderr, process.stderr)),
    ]
    feeder = asyncio.ensure_future(feed()) if stdin_from_client else None
    closed = asyncio.ensure_future(process.channel.wait_closed())
    try:
        done = asyncio.ensure_future(_finish(work, child))
        await asyncio.wait({done, closed}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            done.cancel()
            raise BrokenPipeError("channel closed while the command was running")
        code = child.returncode or 0
        # A child killed by signal N reports -N; a shell reports 128+N.
        return code if code >= 0 else 128 - code
    finally:
        if guest is not None:
            guest.processes.discard(child.pid)
        closed.cancel()
        if feeder is not None:
            feeder.cancel()
        for task in work:
            task.cancel()
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            await child.wait()
