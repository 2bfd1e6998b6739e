"""The handles one pipeline run works with, passed to every step."""

import asyncio
import collections
import dataclasses
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from infrahaus_domain.containers.schemas import ContainerSpec
from infrahaus_domain.settings import WorkerTimings
from infrahaus_proxmox import ProxmoxClient, Upid
from infrahaus_proxmox.errors import ProxmoxLocked, ProxmoxTaskFailed
from infrahaus_proxmox.pct import OutputLine, PctExecRunner
from infrahaus_worker.ownership import GuestRef, require_owned
from infrahaus_worker.pipeline.reporter import Reporter

T = TypeVar("T")

# A step's output in the live log: the first part as it comes, the last part when the command ends.
STEP_LIVE_BYTES = 512 * 1024
STEP_TAIL_BYTES = 512 * 1024


@dataclasses.dataclass(kw_only=True)
class PipelineEnv:
    operation_id: str
    # Which run of the operation this is (a resumed operation's next attempt gets its own scratch directory).
    attempt: int = 1
    node: str  # the Proxmox node's name
    vmid: int
    client: ProxmoxClient
    runner: PctExecRunner
    reporter: Reporter
    timings: WorkerTimings
    # The stored creation spec when creating; None for work on an existing container (a services refresh).
    spec: ContainerSpec | None = None
    # The API token the client works as: Proxmox names it as the author of the tasks this operation starts.
    token_id: str = ""
    # The guest this work is about and what proves it ours; None only in tests of single steps.
    guest: GuestRef | None = None
    ip_address: str | None = None
    # Keep the snapshot a safety point took once the operation ended (INFRAHAUS_KEEP_AUTOMATIC_SNAPSHOTS).
    keep_snapshots: bool = False
    root_password: Callable[[], str] = lambda: secrets.token_urlsafe(24)

    async def require_owned(self, step: str | None = None) -> None:
        """Refuse (`ownership_mismatch`) unless the guest carries this container's marker: before every step that
        changes the guest (see `infrahaus_worker.ownership`)."""
        if self.guest is None:
            raise RuntimeError("the pipeline ran without the guest's ownership reference")
        await require_owned(self.client, self.guest, self.reporter, lock_wait=self.timings.lock_wait, step=step)

    async def remember_create_task(self, upid: str) -> None:
        """Save the create task this operation started (a resume waits for it; it proves a half-created guest
        ours) before waiting for it."""
        await self.reporter.save_checkpoint(create_upid=upid)
        if self.guest is not None:
            self.guest = dataclasses.replace(self.guest, create_upid=upid)

    @property
    def creation(self) -> ContainerSpec:
        """The spec the creation steps work from."""
        if self.spec is None:
            raise RuntimeError("a creation step ran without a creation spec")
        return self.spec

    @property
    def workdir(self) -> str:
        """Per-attempt scratch directory inside the container (removed at the end of each step): an attempt that
        only stalled and is stopping must not remove the directory of the attempt that took over."""
        return f"/tmp/infrahaus-{self.operation_id.replace('-', '')[:16]}-{self.attempt}"  # noqa: S108 - in the guest

    def line_sink(self, source: str) -> "LiveOutput":
        """An `on_line` callback that streams a command's output into the live log (bounded, see `LiveOutput`);
        await its `finish()` when the command has ended."""
        return LiveOutput(self.reporter, source)


class LiveOutput:
    """A step's command output into the live log, bounded whatever the command prints: the first `live_bytes` go
    out line by line as they come; after that lines are only counted, the last `tail_bytes` of them kept, and
    `finish()` writes a line saying how much was left out, then that tail (the end of the output is where a
    failure shows). Memory and the log store hold at most `live_bytes + tail_bytes` per step."""

    def __init__(
        self, reporter: Reporter, source: str, *, live_bytes: int = STEP_LIVE_BYTES, tail_bytes: int = STEP_TAIL_BYTES
    ) -> None:
        self._reporter = reporter
        self._source = source
        self._live_left = live_bytes
        self._tail_bytes = tail_bytes
        self._tail: collections.deque[OutputLine] = collections.deque()
        self._tail_size = 0
        self.held_lines = 0
        self.held_bytes = 0

    async def __call__(self, line: OutputLine) -> None:
        size = len(line.text) + 1
        if self._live_left >= size:
            self._live_left -= size
            await self._reporter.line(line.text, stream=line.stream, source=self._source)
            return
        if self._live_left >= 0:
            self._live_left = -1
            await self._reporter.line(
                "[output beyond this point is held back; its last lines follow when the command ends]",
                stream="info",
                source=self._source,
            )
        self.held_lines += 1
        self.held_bytes += size
        self._tail.append(line)
        self._tail_size += size
        while self._tail_size > self._tail_bytes and len(self._tail) > 1:
            self._tail_size -= len(self._tail.popleft().text) + 1

    async def finish(self) -> None:
        """Write what was held back: how much was left out, then the kept tail."""
        if not self.held_lines:
            return
        omitted_lines, omitted_bytes = self.held_lines - len(self._tail), self.held_bytes - self._tail_size
        if omitted_lines:
            await self._reporter.line(
                f"[{omitted_lines} lines ({omitted_bytes} bytes) of output left out]",
                stream="info",
                source=self._source,
            )
        while self._tail:
            line = self._tail.popleft()
            await self._reporter.line(line.text, stream=line.stream, source=self._source)
        self._tail_size = 0
        self.held_lines = self.held_bytes = 0


def is_lock_error(exc: BaseException) -> bool:
    """Proxmox said the container is locked, in the call's answer or as the reason its task failed (start, stop
    and shutdown check the lock inside the task: pve-container API2/LXC/Status.pm)."""
    if isinstance(exc, ProxmoxLocked):
        return True
    return isinstance(exc, ProxmoxTaskFailed) and exc.locked


async def run_task(
    client: ProxmoxClient,
    start: Callable[[], Awaitable[Upid]],
    *,
    timeout: float,  # noqa: ASYNC109 - the task's own time limit, reported by tasks.wait
    lock_wait: float,
) -> Upid:
    """Start a Proxmox task and wait for it; a lock failure, in the call or in the task, starts it again with
    backoff for at most `lock_wait` seconds. Returns the UPID of the task that succeeded."""

    async def once() -> Upid:
        upid = await start()
        await client.tasks.wait(upid, timeout=timeout)
        return upid

    return await retry_locked(once, wait=lock_wait)


async def retry_locked(action: Callable[[], Awaitable[T]], *, wait: float) -> T:
    """Run `action`, retrying "CT is locked" answers with backoff for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            return await action()
        except (ProxmoxLocked, ProxmoxTaskFailed) as exc:
            remaining = deadline - time.monotonic()
            if not is_lock_error(exc) or remaining <= 0:
                raise
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)
