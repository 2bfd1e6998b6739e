"""/nodes/{node}/tasks: task status, logs, the task list, and waiting for a task to finish.

An unknown UPID (another node's, or one whose log is gone) raises ProxmoxNotFound from `status`; its `log` answers
one line ``unable to open file - No such file or directory`` (pve-manager ``PVE/API2/Tasks.pm``).
"""

import asyncio
import builtins
import time
from typing import TYPE_CHECKING, Any

from infrahaus_proxmox._paths import node_segment, quoted_segment, vmid_segment
from infrahaus_proxmox.errors import ProxmoxTaskFailed, ProxmoxTimeout
from infrahaus_proxmox.models import TaskEntry, TaskStatus
from infrahaus_proxmox.parsing import decode_list, decode_one
from infrahaus_proxmox.upid import Upid, parse_upid

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient

LOG_TAIL_LINES = 20


class TasksApi:
    def __init__(self, client: "ProxmoxClient"):
        self._client = client

    @staticmethod
    def _path(node: str, upid: str) -> str:
        return f"/nodes/{node_segment(node)}/tasks/{quoted_segment(parse_upid(upid))}"

    async def list(
        self,
        node: str,
        *,
        vmid: int | None = None,
        typefilter: str | None = None,
        source: str = "all",
        limit: int = 50,
    ) -> builtins.list[TaskEntry]:
        """GET /nodes/{node}/tasks, newest first: running tasks (``source=all|active``) and finished ones
        (``archive``, Proxmox's default). A token sees only the tasks it started, unless it has ``Sys.Audit`` on
        the node."""
        if source not in ("all", "active", "archive"):
            raise ValueError(f"invalid task source {source!r}")
        params: dict[str, Any] = {"source": source, "limit": max(0, limit), "typefilter": typefilter}
        if vmid is not None:
            params["vmid"] = vmid_segment(vmid)
        data = await self._client.request("GET", f"/nodes/{node_segment(node)}/tasks", params)
        return decode_list(data, TaskEntry, "task list")

    async def status(self, node: str, upid: str) -> TaskStatus:
        """GET /nodes/{node}/tasks/{upid}/status."""
        data = await self._client.request("GET", f"{self._path(node, upid)}/status")
        return decode_one(data, TaskStatus, "task status")

    async def log(self, node: str, upid: str, limit: int = 50, start: int = 0) -> builtins.list[str]:
        """GET /nodes/{node}/tasks/{upid}/log: up to `limit` lines from line `start`."""
        lines, _total = await self._log_page(node, upid, start=start, limit=limit)
        return lines

    async def log_tail(self, node: str, upid: str, lines: int = LOG_TAIL_LINES) -> builtins.list[str]:
        """The last `lines` lines of a task log (Proxmox pages from the start; `total` finds the end)."""
        first, total = await self._log_page(node, upid, start=0, limit=lines)
        if total is None or total <= lines:
            return first[-lines:]
        tail, _ = await self._log_page(node, upid, start=total - lines, limit=lines)
        return tail

    async def _log_page(self, node: str, upid: str, *, start: int, limit: int) -> tuple[builtins.list[str], int | None]:
        params = {"start": max(0, start), "limit": max(0, limit)}
        envelope = await self._client.request_envelope("GET", f"{self._path(node, upid)}/log", params)
        entries: Any = envelope.get("data")
        lines: list[tuple[int, str]] = []
        if isinstance(entries, list):
            for position, entry in enumerate(entries):
                if isinstance(entry, dict) and "t" in entry:
                    number = entry.get("n")
                    lines.append((number if isinstance(number, int) else position, str(entry["t"])))
        total = envelope.get("total")
        return [text for _n, text in sorted(lines)], total if isinstance(total, int) else None

    async def wait(
        self,
        upid: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the agreed name for the overall wait
        poll_interval: float = 0.2,
        max_interval: float = 2.0,
    ) -> TaskStatus:
        """Poll the task until it stops; the interval grows from `poll_interval` to `max_interval`.

        Returns the final status on "OK" or "WARNINGS: n"; raises ProxmoxTaskFailed (exit status
        and log tail) on any other exit status, ProxmoxTimeout when `timeout` seconds pass first.
        """
        task: Upid = parse_upid(upid)
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            status = await self.status(task.node, task)
            if not status.running:
                if status.succeeded:
                    return status
                exitstatus = status.exitstatus or "unknown"
                raise ProxmoxTaskFailed(task, exitstatus, await self.log_tail(task.node, task))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProxmoxTimeout(f"task {task} still running after {timeout:g}s")
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, max_interval)
