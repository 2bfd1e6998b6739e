"""What callers of `infrahaus_proxmox.pct` name without running commands: its errors, targets and results.

Kept apart from `pct` so that importing an error class does not load asyncssh (about 30 MB per process, which the
API pays only once it opens an SSH connection).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from infrahaus_proxmox.errors import ProxmoxError

Stream = Literal["stdout", "stderr"]


class SshError(ProxmoxError):
    """Root of the SSH/pct errors."""


class SshUnreachable(SshError):
    """The node's SSH port cannot be reached (refused, timed out, reset during the handshake)."""


class SshConnectionLost(SshUnreachable):
    """The connection dropped while a command was running; the command may have partly run."""


class SshAuthError(SshError):
    """The node refused the credentials."""


class SshHostKeyMismatch(SshError):
    """The node presented a host key other than the pinned one."""


class PctTimeout(SshError):
    """A command did not finish within its timeout (it was killed)."""


class PctNotRunning(SshError):
    """`pct exec`/`pct push` was refused because the container is not running."""


class PctPushFailed(SshError):
    """`pct push` said something (it exits 0 even when writing inside the container failed): its message."""


@dataclass(frozen=True, slots=True)
class ExpectedFile:
    """What a pushed file must look like inside the container."""

    path: str
    sha256: str
    size: int
    mode: int
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class FileMismatch:
    """A pushed file that is not what was sent: which one, and how (``missing``, ``size``, ``sha256``, ...)."""

    path: str
    problem: str


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in. ``private_key`` is OpenSSH/PEM private key text; ``host_key`` an OpenSSH
    public key line that pins the node (None = trust on first use)."""

    host: str
    port: int = 22
    username: str = "root"
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    host_key: str | None = None


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line of a command's output (without its newline) and the stream it came on."""

    stream: Stream
    text: str


@dataclass(slots=True)
class ExecResult:
    """A finished command: exit code and its last output lines (at most `KEEP_BYTES`), per stream and in arrival
    order; `omitted_lines`/`omitted_bytes` count what came before them and was not kept."""

    exit_code: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    lines: list[OutputLine] = field(default_factory=list)
    omitted_lines: int = 0
    omitted_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


OnLine = Callable[[OutputLine], Awaitable[None] | None]
