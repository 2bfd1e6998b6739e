"""How pipeline steps talk to the outside world while they work.

The actor glue implements `Reporter` over the domain services (operation progress and heartbeat,
the event trail, the log buffer, the container's runtime fields); tests can implement it in memory.
"""

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from infrahaus_worker.discovery import DiscoveryFinding

Stream = Literal["stdout", "stderr", "info"]


class Reporter(Protocol):
    async def step(self, step: str, progress: int, message: str) -> None:
        """Enter a step: record a `step` event and the operation's step/progress.

        Raises `OperationCancelledError` when the operation was cancelled meanwhile.
        """
        ...

    async def progress(self, progress: int, message: str | None = None) -> None:
        """Progress inside the current step (0-100 overall)."""
        ...

    async def line(self, text: str, *, stream: Stream, source: str) -> None:
        """One output line for the live log (e.g. source ``script:10-install.sh`` or ``packages:apt``)."""
        ...

    async def event(self, type: str, message: str, meta: dict[str, Any] | None = None) -> None:
        """An audit trail event of the container (``script_completed``, ``service_discovered``, ...)."""
        ...

    async def checkpoint(self) -> dict[str, Any]:
        """What an earlier delivery of this operation already achieved (e.g. ``{"created": True}``)."""
        ...

    async def save_checkpoint(self, **values: Any) -> None:
        """Persist progress markers so a redelivered message resumes instead of repeating work."""
        ...

    async def guest_created_by(self, upid: str) -> None:
        """Record the create task that made (or is making) the container's guest: while the guest's config holds
        only `lock: create`, that task is the only proof the guest is ours (see `infrahaus_worker.ownership`)."""
        ...

    async def set_ip(self, ip_address: str | None) -> None: ...

    async def services(self, services: Sequence[DiscoveryFinding]) -> None:
        """Replace the container's discovered services (credentials are encrypted by the receiver)."""
        ...
