"""Run commands inside LXC containers through the node's SSH connection (`pct exec`, `pct push`).

One `PctExecRunner` holds one asyncssh connection to one node (keepalive on) and opens a
session channel per command, so many commands can run at once. Commands are argv lists joined
with `shlex.join`; nothing is formatted into a shell string.

Host key: `SshTarget.host_key` pins the node's key (an OpenSSH public key line); a different key
is refused with `SshHostKeyMismatch`. Without a pin the first key seen is accepted, reported by
`connect()`/`host_key` for the caller to store, and pinned for the rest of the runner's life.

Environment and timeouts: `pct exec` passes the SSH session's environment into the container (``--keep-env`` is
pct's default, PATH forced to ``/sbin:/bin:/usr/sbin:/usr/bin``: pve-container ``src/PVE/CLI/pct.pm``), so every
command runs as ``env -i PATH=… LC_ALL=C.UTF-8 HOME=/root timeout -k 10 <limit> <argv>``: a clean, explicit
environment, and a time limit enforced *inside* the container, so a timed-out step cannot leave apt or dpkg running
and holding its lock. The node's ``timeout`` around `pct` (a command of a lost non-PTY session keeps running) and a
local deadline fire a little later; any of them raises `PctTimeout`.

pct's own refusals are recognised by its messages (its exit codes are Perl's errno): ``container '<vmid>' not
running!`` (`pct exec`) and ``can only push files to a running CT`` (`pct push`) raise `PctNotRunning`. `pct push`
exits 0 even when writing inside the container failed (it prints the reason, or nothing at all when the copy
itself fails), so any output of it is a failure, and `verify_files` checks what landed from inside the container.

Reconnect rule: a connection found dead *before* a command is sent (closed while idle, or the
channel cannot be opened) is re-established once and the command is sent on the new connection.
A connection lost *while* a command runs is never retried, because the command may have had
effects: `SshConnectionLost` is raised and the next call reconnects.
"""

import asyncio
import collections
import contextlib
import logging
import re
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncssh

from infrahaus_proxmox.errors import ProxmoxLocked, ProxmoxNotFound
from infrahaus_proxmox.ssh_types import (
    ExecResult as ExecResult,
)
from infrahaus_proxmox.ssh_types import (
    ExpectedFile as ExpectedFile,
)
from infrahaus_proxmox.ssh_types import (
    FileMismatch as FileMismatch,
)
from infrahaus_proxmox.ssh_types import (
    OnLine as OnLine,
)
from infrahaus_proxmox.ssh_types import (
    OutputLine as OutputLine,
)
from infrahaus_proxmox.ssh_types import (
    PctNotRunning as PctNotRunning,
)
from infrahaus_proxmox.ssh_types import (
    PctPushFailed as PctPushFailed,
)
from infrahaus_proxmox.ssh_types import (
    PctTimeout as PctTimeout,
)
from infrahaus_proxmox.ssh_types import (
    SshAuthError as SshAuthError,
)
from infrahaus_proxmox.ssh_types import (
    SshConnectionLost as SshConnectionLost,
)
from infrahaus_proxmox.ssh_types import (
    SshError as SshError,
)
from infrahaus_proxmox.ssh_types import (
    SshHostKeyMismatch as SshHostKeyMismatch,
)
from infrahaus_proxmox.ssh_types import (
    SshTarget as SshTarget,
)
from infrahaus_proxmox.ssh_types import (
    SshUnreachable as SshUnreachable,
)
from infrahaus_proxmox.ssh_types import (
    Stream as Stream,
)

log = logging.getLogger(__name__)

# How much later than the remote `timeout` the local deadline fires (the remote one should win).
_LOCAL_GRACE = 2.0
# Remote `timeout` sends TERM, then KILL this many seconds later.
_KILL_AFTER = 5
# Inside the container: TERM at the limit, KILL this many seconds later; the node's `timeout` around `pct exec`
# fires this much later still, so the one inside wins and takes the command's process group with it.
_CT_KILL_AFTER = 10
_NODE_MARGIN = _CT_KILL_AFTER + _KILL_AFTER
_TIMEOUT_EXITS = frozenset({124, 128 + 9, 128 + 15})
# Output bounds, whatever a command prints: a line is cut after this many bytes (the rest is counted, never held);
# a command keeps its last KEEP_BYTES of lines for its result (older ones are counted). Between the channel and
# the consumer at most _QUEUE_HIGH lines wait: then reading pauses and SSH flow control stops the command's writes
# until the consumer caught up to _QUEUE_LOW.
MAX_LINE_BYTES = 8 * 1024
KEEP_BYTES = 1024 * 1024
_QUEUE_HIGH, _QUEUE_LOW = 256, 64
# What every command in a container starts with (pct would otherwise pass the SSH session's locale and variables).
CONTAINER_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "HOME=/root")
_PUSH_TEMPLATE = "/tmp/infrahaus-push.XXXXXXXXXX"  # noqa: S108 - on the node, made unique by mktemp
_NOT_RUNNING = re.compile(r"^(container '\d+' not running!|can only push files to a running CT)$")
_NO_CONFIG = re.compile(r"^Configuration file '.*' does not exist$")
_LOCKED = re.compile(r"^(CT is locked \(.*\)|can't lock file '.*' - got timeout)$")
# Verifies pushed files in one `pct exec`: per path "<size> <octal mode> <uid> <gid>" then the sha256, or "missing".
_VERIFY = (
    'for f; do if [ -f "$f" ]; then stat -c "%s %a %u %g" -- "$f" && sha256sum < "$f"; else echo missing; fi; done'
)


class _Session(asyncssh.SSHClientSession[bytes]):
    """Splits channel data into lines per stream, queued in exact arrival order; bounded (see `MAX_LINE_BYTES`):
    a line never holds more than `MAX_LINE_BYTES`, and reading pauses while `_QUEUE_HIGH` lines wait."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[OutputLine | None] = asyncio.Queue()
        self.exit_status: int | None = None
        self.lost: Exception | None = None
        self._partial: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._cut: dict[Stream, int] = {"stdout": 0, "stderr": 0}
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._paused = False

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        stream: Stream = "stderr" if datatype == asyncssh.EXTENDED_DATA_STDERR else "stdout"
        start = 0
        while True:
            end = data.find(b"\n", start)
            self._take(stream, data[start : len(data) if end < 0 else end])
            if end < 0:
                break
            self._emit(stream)
            start = end + 1
        if self.events.qsize() >= _QUEUE_HIGH and not self._paused and self._chan is not None:
            self._paused = True
            self._chan.pause_reading()

    def consumed(self) -> None:
        """The consumer took a line: resume reading once the queue has drained enough."""
        if self._paused and self.events.qsize() <= _QUEUE_LOW and self._chan is not None:
            self._paused = False
            self._chan.resume_reading()

    def _take(self, stream: Stream, chunk: bytes) -> None:
        partial = self._partial[stream]
        room = MAX_LINE_BYTES - len(partial)
        if room > 0:
            partial += chunk[:room]
        self._cut[stream] += max(0, len(chunk) - max(room, 0))

    def _emit(self, stream: Stream) -> None:
        text = _decode(bytes(self._partial[stream]))
        if self._cut[stream]:
            text += f" [... {self._cut[stream]} more bytes of this line cut]"
        self._partial[stream] = bytearray()
        self._cut[stream] = 0
        self.events.put_nowait(OutputLine(stream, text))

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_status = 128 + 9 if signal == "KILL" else 128 + 15

    def connection_lost(self, exc: Exception | None) -> None:
        for stream in ("stdout", "stderr"):
            if self._partial[stream] or self._cut[stream]:
                self._emit(stream)
        self.lost = exc
        self.events.put_nowait(None)


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")


class ExecStream:
    """Async iterator over a command's output lines; `exit_code` is set once it is exhausted.

    Raises `PctTimeout`, `SshConnectionLost` or `PctNotRunning` like `PctExecRunner.exec`.
    """

    def __init__(
        self,
        runner: "PctExecRunner",
        command: str,
        timeout: float,
        stdin: bytes | None,
        *,
        grace: float = _LOCAL_GRACE,
        keep_bytes: int = KEEP_BYTES,
    ) -> None:
        self._runner = runner
        self._command = command
        self._timeout = timeout
        self._stdin = stdin
        self._grace = grace
        self.exit_code: int | None = None
        # The last lines (at most `keep_bytes` of text), and what was let go before them.
        self._kept: collections.deque[OutputLine] = collections.deque()
        self._kept_bytes = 0
        self.keep_bytes = keep_bytes
        self.omitted_lines = 0
        self.omitted_bytes = 0

    @property
    def lines(self) -> list[OutputLine]:
        """The command's last output lines (at most `keep_bytes`), in arrival order."""
        return list(self._kept)

    def _keep(self, line: OutputLine) -> None:
        self._kept.append(line)
        self._kept_bytes += len(line.text)
        while self._kept_bytes > self.keep_bytes and len(self._kept) > 1:
            dropped = self._kept.popleft()
            self._kept_bytes -= len(dropped.text)
            self.omitted_lines += 1
            self.omitted_bytes += len(dropped.text)

    def __aiter__(self) -> AsyncIterator[OutputLine]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[OutputLine]:
        # Before the channel opens: the node's `timeout` starts later, so a 124 from it comes
        # no earlier than this clock's timeout.
        started = time.monotonic()
        chan, session = await self._runner._open(self._command)
        deadline = started + self._timeout + self._grace
        try:
            # A command that exits before reading its input closes the channel under us; its exit
            # status still arrives through the session.
            with contextlib.suppress(BrokenPipeError, ConnectionError, asyncssh.Error):
                if self._stdin:
                    chan.write(self._stdin)
                chan.write_eof()
            while True:
                remaining = deadline - time.monotonic()
                try:
                    event = await asyncio.wait_for(session.events.get(), max(remaining, 0.001))
                except TimeoutError:
                    raise PctTimeout(f"command timed out after {self._timeout:g}s") from None
                if event is None:
                    break
                session.consumed()
                self._keep(event)
                yield event
        finally:
            chan.close()
        if session.exit_status is None:
            self._runner._forget_connection()
            raise SshConnectionLost("connection to the node was lost while the command was running")
        # coreutils' timeout exits 124; busybox's (Alpine) reports the signal's 128+N instead.
        if session.exit_status in _TIMEOUT_EXITS and time.monotonic() - started >= self._timeout:
            raise PctTimeout(f"command timed out after {self._timeout:g}s")
        self.exit_code = session.exit_status
        _raise_for_pct(self.exit_code, [line.text for line in self.lines if line.stream == "stderr"])


def _raise_for_pct(exit_code: int, stderr: Sequence[str]) -> None:
    """Turn pct's own refusals (not the container command's failures) into typed errors. pct dies with Perl's
    errno as its exit code, so the message decides, and only when the exit code is not 0."""
    last = stderr[-1] if stderr else ""
    if exit_code == 0:
        return
    if _NOT_RUNNING.match(last):
        raise PctNotRunning(last)
    if _NO_CONFIG.match(last):
        raise ProxmoxNotFound(last)
    if _LOCKED.match(last):
        raise ProxmoxLocked(last)


class PctExecRunner:
    """One SSH connection to one Proxmox node, running `pct` commands (see the module docstring)."""

    def __init__(
        self,
        target: SshTarget,
        *,
        connect_timeout: float = 10.0,
        keepalive_interval: float = 15.0,
        resolver: Callable[[str, int], Awaitable[str]] | None = None,
        on_host_key: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`resolver` gives the address to connect to (asked before every connection; it may refuse by raising).
        `on_host_key` is awaited with the key an unpinned node presented, before any command is sent: it stores
        the pin, or raises to refuse the key (the connection is then closed)."""
        self._target = target
        self._resolver = resolver
        self._on_host_key = on_host_key
        self._connect_timeout = connect_timeout
        self._keepalive_interval = keepalive_interval
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self._pinned: str | None = None
        if target.host_key:
            try:
                asyncssh.import_public_key(target.host_key)
            except ValueError as exc:
                raise ValueError(f"host_key is not an OpenSSH public key line: {exc}") from None
            self._pinned = _key_line(target.host_key)
        self._client_keys: list[asyncssh.SSHKey] | None = None
        if target.private_key:
            try:
                self._client_keys = [asyncssh.import_private_key(target.private_key)]
            except ValueError:
                # The message could quote key material; say only what is wrong.
                raise ValueError("private_key is not a readable unencrypted private key") from None
        self._seen: str | None = None
        # Connections made after the first one (a dropped connection was re-established).
        self.reconnects = 0

    @property
    def host_key(self) -> str | None:
        """The host key the node presented (OpenSSH line), once connected."""
        return self._seen

    async def __aenter__(self) -> "PctExecRunner":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> str:
        """Connect (if not connected) and return the node's host key as an OpenSSH line."""
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._dial()
        assert self._seen is not None
        return self._seen

    async def aclose(self) -> None:
        """Close the connection; running commands are cut off."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    async def _dial(self) -> asyncssh.SSHClientConnection:
        target = self._target
        known_hosts: tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]] | None = None
        if self._pinned is not None:
            known_hosts = ([asyncssh.import_public_key(self._pinned)], [], [])
        address = await self._resolver(target.host, target.port) if self._resolver is not None else target.host
        try:
            conn = await asyncssh.connect(
                address,
                target.port,
                username=target.username,
                password=target.password,
                client_keys=self._client_keys,
                known_hosts=known_hosts,
                agent_path=None,
                config=None,
                connect_timeout=self._connect_timeout,
                keepalive_interval=self._keepalive_interval,
                keepalive_count_max=3,
                encoding=None,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise SshHostKeyMismatch(
                f"host key of {target.host}:{target.port} does not match the pinned key: {exc.reason}"
            ) from None
        except asyncssh.PermissionDenied:
            raise SshAuthError(f"SSH login to {target.host}:{target.port} as {target.username} was refused") from None
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            raise SshUnreachable(f"cannot reach SSH on {target.host}:{target.port}: {_reason(exc)}") from None
        if self._seen is not None:
            self.reconnects += 1
        key = conn.get_server_host_key()
        assert key is not None
        self._seen = _key_line(key.export_public_key("openssh").decode())
        if self._pinned is None and self._on_host_key is not None:
            try:
                await self._on_host_key(self._seen)
            except BaseException:
                conn.abort()
                raise
        # Trust on first use: later reconnects must meet the same key.
        self._pinned = self._seen
        return conn

    def _forget_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    async def _open(self, command: str) -> tuple[asyncssh.SSHClientChannel[bytes], _Session]:
        """Open a session channel running ``command``, reconnecting once if the connection is dead."""
        for attempt in range(2):
            async with self._lock:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._dial()
                conn = self._conn
            try:
                chan, session = await conn.create_session(_Session, command, encoding=None)
                assert isinstance(session, _Session)
            except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as exc:
                self._forget_connection()
                if attempt:
                    raise SshUnreachable(f"cannot open an SSH session: {_reason(exc)}") from None
                continue
            channel: asyncssh.SSHClientChannel[bytes] = chan
            return channel, session
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ commands

    def stream(self, vmid: int, argv: Sequence[str], *, timeout: float, stdin: bytes | None = None) -> ExecStream:
        """Run ``argv`` in container ``vmid`` (clean environment, time limit inside the container) and iterate over
        its output lines as they arrive."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        inner = ["env", "-i", *CONTAINER_ENV, "timeout", "-k", str(_CT_KILL_AFTER), f"{timeout:g}", *argv]
        command = _remote(["pct", "exec", str(vmid), "--", *inner], timeout + _NODE_MARGIN)
        return ExecStream(self, command, timeout, stdin, grace=_NODE_MARGIN + _LOCAL_GRACE)

    async def exec(
        self,
        vmid: int,
        argv: Sequence[str],
        *,
        timeout: float,  # noqa: ASYNC109 - also enforced on the node by `timeout`
        on_line: OnLine | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run ``argv`` in container ``vmid``; ``on_line`` sees every line as it arrives.

        A non-zero exit is returned, not raised; pct's own refusals raise (`PctNotRunning`,
        `ProxmoxNotFound`), as do `PctTimeout` and `SshConnectionLost`.
        """
        return await self._collect(self.stream(vmid, argv, timeout=timeout, stdin=stdin), on_line)

    async def run_host(
        self,
        argv: Sequence[str],
        timeout: float,  # noqa: ASYNC109 - also enforced on the node by `timeout`
        *,
        stdin: bytes | None = None,
        on_line: OnLine | None = None,
    ) -> ExecResult:
        """Run ``argv`` on the node itself (e.g. ``["pct", "status", "100"]``). A non-zero exit is returned."""
        return await self._collect(ExecStream(self, _remote(argv, timeout), timeout, stdin), on_line)

    async def _collect(self, stream: ExecStream, on_line: OnLine | None) -> ExecResult:
        async for line in stream:
            if on_line is not None:
                outcome = on_line(line)
                if outcome is not None:
                    await outcome
        assert stream.exit_code is not None
        result = ExecResult(
            exit_code=stream.exit_code,
            lines=stream.lines,
            omitted_lines=stream.omitted_lines,
            omitted_bytes=stream.omitted_bytes,
        )
        for line in stream.lines:
            (result.stdout if line.stream == "stdout" else result.stderr).append(line.text)
        return result

    async def push(
        self,
        vmid: int,
        content: bytes,
        path: str,
        mode: int = 0o644,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - per remote step, enforced on the node too
    ) -> None:
        """Write ``content`` to ``path`` in container ``vmid`` with ``mode``.

        Goes through a host temp file created with mode 0600 (``mktemp``), filled over stdin, and
        `pct push --perms`; the temp file is removed whatever happens. pct's refusals raise `PctNotRunning` /
        `ProxmoxLocked`; anything it prints raises `PctPushFailed` (it exits 0 either way). A silent failure of
        the copy is only seen by `verify_files`.
        """
        if not path.startswith("/"):
            raise ValueError(f"container path must be absolute: {path!r}")
        # mktemp creates the file with mode 0600 under a name nobody can predict.
        made = await self.run_host(["mktemp", _PUSH_TEMPLATE], timeout)
        _check(made, "mktemp")
        temp = made.stdout[-1].strip() if made.stdout else ""
        if not temp.startswith("/tmp/"):  # noqa: S108 - checking what the node's mktemp answered
            raise SshError(f"mktemp on the node answered an unexpected path: {temp!r}")
        pushed_ok = False
        try:
            _check(await self.run_host(["chmod", "600", temp], timeout), "chmod")
            _check(await self.run_host(["dd", f"of={temp}", "bs=65536", "status=none"], timeout, stdin=content), "dd")
            pushed = await self.run_host(["pct", "push", str(vmid), temp, path, "--perms", f"{mode:04o}"], timeout)
            _raise_for_pct(pushed.exit_code, pushed.stderr)
            _check(pushed, "pct push")
            said = [line for line in pushed.stderr + pushed.stdout if line.strip()]
            if said:
                raise PctPushFailed(f"pct push to {path} failed: {said[-1]}")
            pushed_ok = True
        finally:
            try:
                _check(await self.run_host(["rm", "-f", temp], timeout), "rm")
            except SshError:
                # Never hide the error that broke the push; report a failed cleanup otherwise.
                if pushed_ok:
                    raise
                log.warning("could not remove the temporary file %s on %s", temp, self._target.host)

    async def verify_files(
        self,
        vmid: int,
        expected: Sequence[ExpectedFile],
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - also enforced inside the container
    ) -> list[FileMismatch]:
        """Check pushed files from inside the container, all in one `pct exec`: size, sha256, mode and owner.
        Returns what differs (empty when every file is as sent)."""
        if not expected:
            return []
        argv = ["sh", "-c", _VERIFY, "infrahaus-verify", *(file.path for file in expected)]
        result = await self.exec(vmid, argv, timeout=timeout)
        if result.exit_code != 0:
            detail = result.stderr[-1] if result.stderr else f"exit code {result.exit_code}"
            raise SshError(f"verifying pushed files failed: {detail}")
        lines = list(result.stdout)
        mismatches: list[FileMismatch] = []
        for file in expected:
            first = lines.pop(0) if lines else "missing"
            if first == "missing":
                mismatches.append(FileMismatch(file.path, "missing"))
                continue
            digest = lines.pop(0).split()[0] if lines else ""
            size, mode, uid, gid = [*first.split(), "", "", "", ""][:4]
            if size != str(file.size):
                mismatches.append(FileMismatch(file.path, f"size {size}, expected {file.size}"))
            elif digest != file.sha256:
                mismatches.append(FileMismatch(file.path, "sha256 differs"))
            elif mode != f"{file.mode:o}":
                mismatches.append(FileMismatch(file.path, f"mode {mode}, expected {file.mode:o}"))
            elif (uid, gid) != (str(file.uid), str(file.gid)):
                mismatches.append(FileMismatch(file.path, f"owner {uid}:{gid}, expected {file.uid}:{file.gid}"))
        return mismatches

    async def set_features(self, vmid: int, features: dict[str, bool], *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Apply container features with ``pct set <vmid> --features nesting=1,keyctl=1`` (needs root@pam's SSH).
        On a running container Proxmox keeps the change pending until the next start."""
        value = ",".join(f"{name}={int(enabled)}" for name, enabled in features.items())
        result = await self.run_host(["pct", "set", str(vmid), "--features", value], timeout)
        _raise_for_pct(result.exit_code, result.stderr)
        _check(result, "pct set")

    async def unlock(self, vmid: int, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Clear a stale lock (e.g. ``lock: create`` left by a crashed task) with ``pct unlock``; a container that
        holds no lock (pct: ``no lock found trying to remove any lock``) is fine."""
        result = await self.run_host(["pct", "unlock", str(vmid)], timeout)
        if result.exit_code != 0 and result.stderr and result.stderr[-1].startswith("no lock found"):
            return
        _raise_for_pct(result.exit_code, result.stderr)
        _check(result, "pct unlock")


def _remote(argv: Sequence[str], timeout: float) -> str:
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    return shlex.join(["timeout", "-k", str(_KILL_AFTER), f"{timeout:g}", *argv])


def _check(result: ExecResult, what: str) -> None:
    if result.exit_code != 0:
        detail = result.stderr[-1] if result.stderr else f"exit code {result.exit_code}"
        raise SshError(f"{what} failed on the node (exit {result.exit_code}): {detail}")


def _key_line(line: str) -> str:
    """``type base64`` of an OpenSSH public key line (comment dropped), for comparisons."""
    return " ".join(line.split()[:2])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason
    return str(exc) or type(exc).__name__
