"""Shapes of bulk actions: the request, a batch with its operations, the list of batches."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.containers.read_schemas import LiveStatus
from infrahaus_domain.containers.schemas import Lifecycle
from infrahaus_domain.operations.schemas import OperationRead

BulkAction = Literal["start", "stop", "shutdown", "restart", "delete", "sync"]
BatchStatus = Literal["active", "finished", "cancelled"]
BatchItemStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "skipped"]
# At most this many containers in one bulk action.
MAX_BATCH = 1000

Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class BulkSelector(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which of your containers: all criteria given must match (`tags`: every tag listed). At least one."""

    node_id: UUID | None = None
    template_id: UUID | None = None
    tags: Annotated[list[Tag], msgspec.Meta(max_length=20)] | None = None
    lifecycle: Lifecycle | None = None
    status: Annotated[
        LiveStatus | None, msgspec.Meta(description="The live status, as the container list shows it.")
    ] = None


class BulkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One action on many containers: name them (`container_ids`) or select them (`selector`), exactly one of both."""

    action: BulkAction
    container_ids: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=MAX_BATCH)] | None = None
    selector: BulkSelector | None = None
    max_parallel: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=MAX_BATCH,
                description="How many of the batch's operations may run at once, across all workers (default: all).",
            ),
        ]
        | None
    ) = None


class BatchCounts(msgspec.Struct, kw_only=True):
    """The batch's containers by the state of their operation (`skipped`: no operation was queued)."""

    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    skipped: int


class BatchItem(msgspec.Struct, kw_only=True):
    """One container of a batch: its operation, or why it got none."""

    container_id: UUID
    hostname: str | None
    status: BatchItemStatus
    waiting: Annotated[
        bool,
        msgspec.Meta(description="Queued and waiting for a free slot of `max_parallel` (its job is not sent yet)."),
    ]
    skipped: Annotated[
        str | None,
        msgspec.Meta(
            description="Why no operation was queued: a problem code (`container_busy`, `invalid_state`, ...)."
        ),
    ]
    detail: str | None
    operation: OperationRead | None


class BatchSummary(msgspec.Struct, kw_only=True):
    id: UUID
    action: BulkAction
    status: Annotated[
        BatchStatus,
        msgspec.Meta(description="`active` while an operation is queued or running; then `finished` or `cancelled`."),
    ]
    max_parallel: int | None
    total: Annotated[int, msgspec.Meta(description="Containers selected, skipped ones included.")]
    counts: BatchCounts
    created_at: datetime
    cancelled_at: datetime | None


class BatchRead(BatchSummary, kw_only=True):
    operations: list[BatchItem]


class BatchPage(msgspec.Struct, kw_only=True):
    items: list[BatchSummary]
    next_cursor: str | None
