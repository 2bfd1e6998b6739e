"""Shapes of the audit trail, the progress log and the event streams.

Both streams send every item as an unnamed SSE event (`data:` only, so a browser's `onmessage` gets them all)
whose JSON carries its kind in `type`: `EventRead` (an audit event: `queued`, `step`, `created`, …), and on a
container's progress stream also `LogLine` (`type: "log"`) and `ProgressDone` (`type: "done"`).
"""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.containers.schemas import Lifecycle
from infrahaus_domain.events.logbuffer import LogLine
from infrahaus_domain.operations.schemas import OperationKind, OperationStatus

EventType = Literal[
    "queued",
    "step",
    "created",
    "started",
    "stopped",
    "restarted",
    "deleted",
    "services_refreshed",
    "failed",
    "cancelled",
    "retried",
    "script_completed",
    "service_discovered",
    "credentials_viewed",
    "marker_added",
    "synced",
    "snapshot_created",
    "snapshot_rolled_back",
    "snapshot_deleted",
    "rolled_back",
    "placed",
]
GuestStatus = Literal["running", "stopped", "paused", "unknown"]


class ContainerState(msgspec.Struct, kw_only=True):
    """The container right after the event: its lifecycle (`deleted` once a delete finished) and the guest's status
    as infrahaus last knew it (set by lifecycle operations; null when not known)."""

    lifecycle: Lifecycle | Literal["deleted"]
    status: GuestStatus | None


class OperationState(msgspec.Struct, kw_only=True):
    """The event's operation right after the event."""

    id: UUID
    kind: OperationKind
    status: OperationStatus
    progress: int
    step: str | None


class EventRead(msgspec.Struct, kw_only=True):
    """One audit event; also an item of both event streams.

    `type` says what happened (see the README's "Events"). `id` orders the audit trail; `seq` is the item's id on
    the container's progress stream (shared with log lines). `container` and `operation` are the state right after
    the event (null on events older than these fields, `operation` null on events without one), so a dashboard
    updates its view from the event alone. `metadata` holds details per type (never a secret).
    """

    type: Annotated[EventType, msgspec.Meta(description="What happened; the README lists every type.")]
    id: int
    seq: int
    container_id: UUID
    operation_id: UUID | None
    message: str
    metadata: dict[str, Any]
    container: ContainerState | None
    operation: OperationState | None
    created_at: datetime


class ProgressDone(msgspec.Struct, kw_only=True):
    """The last item of a container's progress stream: the operation it followed finished (or there is none).

    Its `id` is the last item's; a reconnect with that `Last-Event-ID` is answered `204 No Content`, which stops a
    browser's EventSource."""

    type: Literal["done"] = "done"
    operation_id: UUID | None
    status: OperationStatus | None


class EventPage(msgspec.Struct, kw_only=True):
    """A page of events, newest first, with the number of events of each type (over the whole trail)."""

    items: list[EventRead]
    next_cursor: str | None
    counts: dict[str, int]


class LogPage(msgspec.Struct, kw_only=True):
    """Buffered progress lines, oldest first; pass the last `id` as `after` to continue."""

    items: list[LogLine]
    last_id: int | None
