"""Shapes of long-running operations."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.containers.placement_schemas import PlacementDecision
from infrahaus_domain.proxmox_errors import FailureCode

OperationStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
OperationKind = Literal[
    "create",
    "start",
    "stop",
    "shutdown",
    "restart",
    "delete",
    "services_refresh",
    "sync",
    "snapshot_create",
    "snapshot_rollback",
    "snapshot_delete",
]


class OperationError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A classified failure: stable `code` (e.g. `script_failed`, `node_unreachable`, `worker_lost`), a precise
    `detail`, an optional `remedy` hint, and for task or script failures the last log lines and the exit code."""

    code: Annotated[
        FailureCode,
        msgspec.Meta(description="What went wrong, stable for programs to act on; `remedy` says what to do about it."),
    ]
    detail: str
    remedy: str | None = None
    task_log_tail: list[str] | None = None
    exit_code: int | None = None
    field: Annotated[
        str | None, msgspec.Meta(description="For `validation_failed`: the Proxmox parameter Proxmox refused.")
    ] = None


class OperationRead(msgspec.Struct, kw_only=True):
    id: UUID
    container_id: UUID | None
    kind: OperationKind
    status: OperationStatus
    progress: int
    step: str | None
    message: str | None
    error: OperationError | None
    result: dict[str, Any] | None
    placement: Annotated[
        PlacementDecision | None,
        msgspec.Meta(description="A creation placed automatically (`node_id: auto`): the node picked and why."),
    ]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    batch_id: Annotated[
        UUID | None, msgspec.Meta(description="The bulk action (`GET /api/batches/{id}`) this operation is part of.")
    ]


class OperationPage(msgspec.Struct, kw_only=True):
    items: list[OperationRead]
    next_cursor: str | None


class ShutdownRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Graceful shutdown: Proxmox forces the stop after `timeout` seconds (the result says whether it had to)."""

    timeout: Annotated[int, msgspec.Meta(ge=1, le=3600, description="Seconds before the stop is forced.")] | None = None
