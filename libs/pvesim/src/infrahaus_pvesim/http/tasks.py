"""/nodes/{node}/tasks: the task list, one task's status and its log (pve-manager ``PVE/API2/Tasks.pm``).

- ``…/{upid}/status``: an unparsable UPID is 400 ``errors.upid = "unable to parse worker upid"``, a well-formed
  one without a log file 400 ``errors.upid = "no such task"``.
- ``…/{upid}/log``: an unparsable UPID is the same 400; a well-formed unknown one answers 200 with the single line
  ``unable to open file - No such file or directory``.
- The list (``node_tasks``) shows finished tasks by default (``source=archive``); ``source=active|all`` adds running
  ones with status ``RUNNING``. Filters: ``userfilter``, ``typefilter``, ``vmid``, ``errors``, ``statusfilter``,
  ``since``, ``until``, ``start``, ``limit``; the answer carries ``total``.
- Who sees a task (``$check_task_user``): a token only its own tasks, a user its own and its tokens'; ``Sys.Audit``
  on ``/nodes/<node>`` sees all.
"""

from typing import Any

from infrahaus_proxmox.upid import Upid
from infrahaus_pvesim.access import Principal
from infrahaus_pvesim.guests import split_list
from infrahaus_pvesim.http.common import Ctx, ResourceHandlers, Routes, WithTotal, param_error
from infrahaus_pvesim.state import SimTask
from infrahaus_pvesim.tasks import UNEXPECTED_STATUS, task_status


def _owns(task: SimTask, who: Principal) -> bool:
    """Tasks.pm $check_task_user."""
    if "!" in task.user:
        return who.authid in (task.user, task.user.partition("!")[0])
    return who.authid == task.user


def _status_type(status: str | None) -> str:
    """pve-common UPID.pm normalize_status_type."""
    if not status:
        return "unknown"
    if status == "OK":
        return "ok"
    if status.startswith("WARNINGS: "):
        return "warning"
    if status == UNEXPECTED_STATUS:
        return "unknown"
    return "error"


class TasksHandlers(ResourceHandlers):
    def routes(self) -> Routes:
        return {
            ("GET", "/nodes/{node}/tasks"): self.list,
            ("GET", "/nodes/{node}/tasks/{upid}/status"): self.status,
            ("GET", "/nodes/{node}/tasks/{upid}/log"): self.log,
        }

    def _upid(self, ctx: Ctx) -> str:
        upid = ctx.path["upid"]
        try:
            Upid(upid)
        except ValueError:
            raise param_error({"upid": "unable to parse worker upid"}) from None
        return upid

    def _visible(self, ctx: Ctx, task: SimTask) -> None:
        if not _owns(task, ctx.who):
            self.access.check(ctx.who, f"/nodes/{self.node.name}", ["Sys.Audit"])

    async def list(self, ctx: Ctx) -> Any:
        start = ctx.integer("start", 0) or 0
        limit = ctx.integer("limit", 50)
        limit = 50 if limit is None else limit
        source = ctx.params.get("source", "archive")
        vmid, type_filter = ctx.params.get("vmid"), ctx.params.get("typefilter")
        user_filter = ctx.params.get("userfilter")
        since, until = ctx.integer("since"), ctx.integer("until")
        wanted = {"ok", "warning", "error", "unknown"}
        if ctx.flag("errors"):
            wanted.discard("ok")
        elif "statusfilter" in ctx.params:
            wanted = {s.lower() for s in split_list(ctx.params["statusfilter"])}
        auditor = "Sys.Audit" in self.access.privileges(ctx.who, f"/nodes/{self.node.name}")
        # Active tasks first, then the archive read backwards: the newest first in each.
        active = sorted((t for t in self.node.tasks.values() if t.status == "running"), key=lambda t: -t.started_seq)
        archive = sorted((t for t in self.node.tasks.values() if t.status != "running"), key=lambda t: -t.ended_seq)
        candidates = (active if source in ("active", "all") else []) + (archive if source != "active" else [])
        result: list[dict[str, Any]] = []
        count = 0
        for task in candidates:
            if user_filter and user_filter.lower() not in task.user.lower():
                continue
            if not (auditor or _owns(task, ctx.who)):
                continue
            if (type_filter and task.type != type_filter) or (vmid and task.id != vmid):
                continue
            if (since is not None and task.starttime < since) or (until is not None and task.starttime > until):
                continue
            if _status_type(task.exitstatus) not in wanted:
                continue
            count += 1
            if count <= start or len(result) >= limit:
                continue
            entry = task_status(task)
            entry.pop("exitstatus", None)
            if task.status == "running":
                entry["status"] = "RUNNING"
            else:
                entry["endtime"] = task.endtime
                entry["status"] = task.exitstatus
            result.append(entry)
        return WithTotal(result, count)

    async def status(self, ctx: Ctx) -> Any:
        task = self.node.tasks.get(self._upid(ctx))
        if task is None:
            raise param_error({"upid": "no such task"})
        self._visible(ctx, task)
        return task_status(task)

    async def log(self, ctx: Ctx) -> Any:
        task = self.node.tasks.get(self._upid(ctx))
        if task is None:
            return WithTotal([{"n": 1, "t": "unable to open file - No such file or directory"}], 1)
        self._visible(ctx, task)
        start = ctx.integer("start", 0) or 0
        limit = ctx.integer("limit", 50)
        limit = 50 if limit is None else limit
        lines = [{"n": i + 1, "t": line} for i, line in enumerate(task.log)][start : start + limit]
        return WithTotal(lines, len(task.log))
