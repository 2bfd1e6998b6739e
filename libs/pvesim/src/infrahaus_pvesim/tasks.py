"""Proxmox worker tasks: a UPID, a log, a duration, an exit status; and the guests' config file locks.

A task body is a coroutine that writes log lines and raises `TaskError` to fail. The runner sleeps for the
configured duration, applies injected failures and ends the task the way PVE does (pve-common
``src/PVE/RESTEnvironment.pm`` sub ``fork_worker``): last log line ``TASK OK`` / ``TASK ERROR: <message>``, exit
status ``OK`` or the message. A task killed mid-way (node reboot, daemon killed) writes no last line: its exit status
is ``unexpected status`` (pve-common ``src/PVE/UPID.pm`` / ``Tools.pm`` ``upid_read_status``).

Config file locks (pve-guest-common ``AbstractConfig.pm`` sub ``lock_config``, pve-common ``Tools.pm`` sub
``lock_file_full``): one per guest, ``/run/lock/lxc/pve-config-<vmid>.lock``. Whoever waits longer than the timeout
(10 s; 5 s for create's ``create_and_lock_config``) fails with ``can't lock file '<path>' - got timeout``. The
lifecycle tasks take it inside the task, config updates and ``pct push`` inside the call.
"""

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from infrahaus_proxmox.upid import Upid
from infrahaus_pvesim.faults import NodeFaults
from infrahaus_pvesim.state import SimNode, SimTask

UNEXPECTED_STATUS = "unexpected status"


class TaskError(Exception):
    """Ends a task with this message as its exit status."""


class TaskKilled(Exception):  # noqa: N818 - what happened to the task, not an error of the simulator
    """The task's process died: no last log line, exit status ``unexpected status``, no cleanup."""


class LockTimeout(Exception):  # noqa: N818 - named like what PVE reports
    """A config file lock was not acquired in time (PVE's message is the exception text)."""


def lock_path(vmid: int) -> str:
    """pve-container src/PVE/LXC/Config.pm sub config_file_lock."""
    return f"/run/lock/lxc/pve-config-{vmid}.lock"


def lock_timeout_message(vmid: int) -> str:
    return f"can't lock file '{lock_path(vmid)}' - got timeout"


class TaskLog:
    def __init__(self, task: SimTask, faults: NodeFaults, vmid: int) -> None:
        self._task = task
        self._faults = faults
        self._vmid = vmid

    def __call__(self, line: str) -> None:
        self._task.log.append(line)

    def killpoint(self) -> None:
        """Die here if a test asked for this task to be killed (`NodeFaults.kill_next_task`)."""
        if self._faults.take_task_kill(self._vmid, self._task.type):
            raise TaskKilled


TaskBody = Callable[[TaskLog], Awaitable[None]]


class TaskRunner:
    """Starts tasks on one node, keeps them in ``node.tasks`` and owns the node's config file locks."""

    def __init__(self, node: SimNode, faults: NodeFaults, duration: float, lock_timeout: float = 10.0) -> None:
        self._node = node
        self._faults = faults
        self.duration = duration
        self.lock_timeout = lock_timeout
        self._pstart = int(time.monotonic() * 100) & 0xFFFFFFFF
        self._file_locks: dict[int, asyncio.Lock] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._seq = 0

    def continue_numbering(self) -> None:
        """After tasks were restored into the node (`persist.load`): number new ones after them."""
        self._seq = max([self._seq, *(max(t.started_seq, t.ended_seq) for t in self._node.tasks.values())])

    def _file_lock(self, vmid: int) -> asyncio.Lock:
        return self._file_locks.setdefault(vmid, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def config_lock(
        self,
        vmid: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - PVE's lock timeout, reported with its own message
        log: Callable[[str], None] | None = None,
    ) -> AsyncIterator[None]:
        """Hold guest ``vmid``'s config file lock; raise `LockTimeout` with PVE's message after ``timeout``."""
        lock = self._file_lock(vmid)
        if lock.locked() and log is not None:
            # lock_file_full prints this to STDERR, which lands in the task log.
            log("trying to acquire lock...")
        try:
            await asyncio.wait_for(lock.acquire(), self.lock_timeout if timeout is None else timeout)
        except TimeoutError:
            raise LockTimeout(lock_timeout_message(vmid)) from None
        try:
            yield
        finally:
            lock.release()

    @contextlib.asynccontextmanager
    async def task_lock(self, vmid: int, log: TaskLog) -> AsyncIterator[None]:
        """What a task body runs under: the config file lock, held for the task's configured duration."""
        async with self.config_lock(vmid, log=log):
            await asyncio.sleep(self.duration / 2)
            yield
            await asyncio.sleep(self.duration / 2)

    def config_locked(self, vmid: int) -> bool:
        return self._file_lock(vmid).locked()

    async def hold_config_lock(self, vmid: int, seconds: float) -> None:
        """Hold the config file lock for ``seconds`` (as a long task of someone else would)."""
        async with self.config_lock(vmid, timeout=3600):
            await asyncio.sleep(seconds)

    def start(
        self,
        type: str,
        vmid: int,
        authid: str,
        body: TaskBody,
        *,
        on_failure: Callable[[], Awaitable[None] | None] | None = None,
    ) -> str:
        """Start a task for guest ``vmid`` and return its UPID at once (the API answers with it)."""
        now = int(time.time())
        # Unique per node: a pid-like number that grows with each task.
        pid = (os.getpid() * 1000 + len(self._node.tasks) + random.randint(0, 999)) & 0x3FFFFF  # noqa: S311
        while True:
            upid = str(
                Upid.build(
                    node=self._node.name,
                    pid=pid,
                    pstart=self._pstart,
                    starttime=now,
                    type=type,
                    id=str(vmid),
                    user=authid,
                )
            )
            if upid not in self._node.tasks:
                break
            pid += 1
        self._seq += 1
        task = SimTask(
            upid=upid, node=self._node.name, type=type, id=str(vmid), user=authid, starttime=now, started_seq=self._seq
        )
        self._node.tasks[upid] = task
        runner = asyncio.create_task(self._run(task, vmid, body, on_failure), name=f"pvesim {upid}")
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)
        return upid

    async def _run(
        self, task: SimTask, vmid: int, body: TaskBody, on_failure: Callable[[], Awaitable[None] | None] | None
    ) -> None:
        log = TaskLog(task, self._faults, vmid)
        try:
            # Let the API answer with the UPID before anything happens.
            await asyncio.sleep(0)
            injected = self._faults.take_task_failure(vmid)
            if injected is not None:
                raise TaskError(injected)
            await body(log)
        except TaskKilled:
            self._end(task, UNEXPECTED_STATUS)
        except (TaskError, LockTimeout) as exc:
            await self._fail(task, str(exc), on_failure)
        except Exception as exc:  # the simulator must end every task, whatever broke inside
            await self._fail(task, f"{type(exc).__name__}: {exc}", on_failure)
        else:
            log("TASK OK")
            self._end(task, "OK")

    async def _fail(self, task: SimTask, message: str, on_failure: Callable[[], Awaitable[None] | None] | None) -> None:
        if on_failure is not None:
            result = on_failure()
            if result is not None:
                await result
        # fork_worker turns newlines of the error into spaces.
        message = " ".join(message.split())
        task.log.append(f"TASK ERROR: {message}")
        self._end(task, message)

    def _end(self, task: SimTask, exitstatus: str) -> None:
        self._seq += 1
        task.exitstatus = exitstatus
        task.endtime = int(time.time())
        task.ended_seq = self._seq
        task.status = "stopped"

    async def aclose(self) -> None:
        """Cancel tasks still running (simulator shutdown)."""
        for runner in list(self._running):
            runner.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def task_status(task: SimTask) -> dict[str, object]:
    """GET /nodes/{node}/tasks/{upid}/status as PVE answers it (pve-manager PVE/API2/Tasks.pm read_task_status):
    for a token's task ``user`` is the owner and ``tokenid`` the token's name."""
    upid = Upid(task.upid)
    data: dict[str, object] = {
        "upid": task.upid,
        "node": task.node,
        "pid": upid.pid,
        "pstart": upid.pstart,
        "starttime": task.starttime,
        "type": task.type,
        "id": task.id,
        "user": task.user.split("!")[0],
        "status": task.status,
    }
    if "!" in task.user:
        data["tokenid"] = task.user.split("!", 1)[1]
    if task.status == "stopped":
        data["exitstatus"] = task.exitstatus
    return data
