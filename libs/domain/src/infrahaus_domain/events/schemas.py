"""Output shapes of the audit trail and the progress log."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.events.logbuffer import LogLine

EventType = Literal[
    "created",
    "started",
    "stopped",
    "restarted",
    "deleted",
    "error",
    "step",
    "script_completed",
    "service_discovered",
    "credentials_viewed",
    "cancelled",
    "retried",
]


class EventRead(msgspec.Struct, kw_only=True):
    """One audit entry. `seq` is its id in the container's progress stream (shared with log lines)."""

    id: int
    seq: int
    container_id: UUID
    operation_id: UUID | None
    type: str
    message: str
    metadata: dict[str, Any]
    created_at: datetime


class EventPage(msgspec.Struct, kw_only=True):
    """A page of events, newest first, with the number of events of each type (over the whole trail)."""

    items: list[EventRead]
    next_cursor: str | None
    counts: dict[str, int]


class LogPage(msgspec.Struct, kw_only=True):
    """Buffered progress lines, oldest first; pass the last `id` as `after` to continue."""

    items: list[LogLine]
    last_id: int | None = None
