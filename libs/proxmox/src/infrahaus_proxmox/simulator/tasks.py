"""Proxmox worker tasks: a UPID, a log, a duration, an exit status.

A task body is a coroutine that writes log lines and raises `TaskError` to fail; the runner
holds the guest's operation lock (PVE serialises operations on one guest with a file lock),
sleeps for the configured duration, applies injected failures and ends the task the way
PVE does: last log line ``TASK OK`` / ``TASK ERROR: <message>``, exit status ``OK`` or the message.
"""

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable

from infrahaus_proxmox.simulator.faults import NodeFaults
from infrahaus_proxmox.simulator.state import SimNode, SimTask
from infrahaus_proxmox.upid import Upid


class TaskError(Exception):
    """Ends a task with this message as its exit status."""


class TaskLog:
    def __init__(self, task: SimTask) -> None:
        self._task = task

    def __call__(self, line: str) -> None:
        self._task.log.append(line)


TaskBody = Callable[[TaskLog], Awaitable[None]]


class TaskRunner:
    """Starts tasks on one node and keeps them in ``node.tasks``."""

    def __init__(self, node: SimNode, faults: NodeFaults, duration: float) -> None:
        self._node = node
        self._faults = faults
        self.duration = duration
        self._pstart = int(time.monotonic() * 100) & 0xFFFFFFFF
        self._guest_locks: dict[int, asyncio.Lock] = {}
        self._running: set[asyncio.Task[None]] = set()

    def guest_lock(self, vmid: int) -> asyncio.Lock:
        """The per-guest lock tasks hold while they run (operations on one guest are serialised)."""
        return self._guest_locks.setdefault(vmid, asyncio.Lock())

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
        upid = str(
            Upid.build(
                node=self._node.name, pid=pid, pstart=self._pstart, starttime=now, type=type, id=str(vmid), user=authid
            )
        )
        while upid in self._node.tasks:
            pid += 1
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
        task = SimTask(upid=upid, node=self._node.name, type=type, id=str(vmid), user=authid, starttime=now)
        self._node.tasks[upid] = task
        runner = asyncio.create_task(self._run(task, vmid, body, on_failure), name=f"pvesim {upid}")
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)
        return upid

    async def _run(
        self, task: SimTask, vmid: int, body: TaskBody, on_failure: Callable[[], Awaitable[None] | None] | None
    ) -> None:
        log = TaskLog(task)
        try:
            async with self.guest_lock(vmid):
                await asyncio.sleep(self.duration / 2)
                injected = self._faults.take_task_failure(vmid)
                if injected is not None:
                    raise TaskError(injected)
                await body(log)
                await asyncio.sleep(self.duration / 2)
        except TaskError as exc:
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
        task.log.append(f"TASK ERROR: {message}")
        self._end(task, message)

    @staticmethod
    def _end(task: SimTask, exitstatus: str) -> None:
        task.exitstatus = exitstatus
        task.endtime = int(time.time())
        task.status = "stopped"

    async def aclose(self) -> None:
        """Cancel tasks still running (simulator shutdown)."""
        for runner in list(self._running):
            runner.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def task_status(task: SimTask) -> dict[str, object]:
    """GET /nodes/{node}/tasks/{upid}/status as PVE answers it."""
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
