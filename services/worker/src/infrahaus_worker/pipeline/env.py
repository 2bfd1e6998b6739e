"""The handles one pipeline run works with, passed to every step."""

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxLocked, ProxmoxTaskFailed
from infrahaus_proxmox.pct import OutputLine, PctExecRunner
from infrahaus_worker.pipeline.plan import CreationPlan, Limits
from infrahaus_worker.pipeline.reporter import Reporter

T = TypeVar("T")


@dataclasses.dataclass(kw_only=True)
class PipelineEnv:
    operation_id: str
    plan: CreationPlan
    client: ProxmoxClient
    runner: PctExecRunner
    reporter: Reporter
    limits: Limits
    ip_address: str | None = None
    root_password: Callable[[], str] = lambda: secrets.token_urlsafe(24)

    @property
    def node(self) -> str:
        return self.plan.pve_node

    @property
    def vmid(self) -> int:
        return self.plan.vmid

    @property
    def workdir(self) -> str:
        """Per-operation scratch directory inside the container (removed at the end of each step)."""
        return f"/tmp/infrahaus-{self.operation_id.replace('-', '')[:16]}"  # noqa: S108 - inside the container

    def line_sink(self, source: str) -> Callable[[OutputLine], Awaitable[None]]:
        """An `on_line` callback that streams a command's output into the live log."""

        async def sink(line: OutputLine) -> None:
            await self.reporter.line(line.text, stream=line.stream, source=source)

        return sink


def is_lock_error(exc: BaseException) -> bool:
    """Proxmox said the container is locked, directly or as the reason a task failed."""
    if isinstance(exc, ProxmoxLocked):
        return True
    return isinstance(exc, ProxmoxTaskFailed) and "locked" in exc.exitstatus.lower()


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
