"""Batches: one bulk action over many containers (`POST /api/containers/bulk`), each container's part an operation
of its own."""

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from infrahaus_domain.models.base import UUIDv7AuditBase
from infrahaus_domain.models.containers import JsonB


class Batch(UUIDv7AuditBase):
    """A bulk action: which containers it aimed at, which it skipped and why, and how many of its operations may
    run at once.

    `targets` is every selected container in order (`[{container_id, hostname}]`, kept so a batch still names
    containers a bulk delete removed); `skipped` the ones that got no operation (`[{container_id, hostname, code,
    detail}]`). Operations point at their batch (`Operation.batch_id`); those waiting for a free slot of
    `max_parallel` are `queued` with `Operation.held` set, and no job message was sent for them yet.
    """

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_user_id_id", "user_id", "id"),)

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    # Null: every operation is released at once.
    max_parallel: Mapped[int | None] = mapped_column(Integer, default=None)
    # What the request selected by: {"container_ids": [...]} or {"selector": {...}}.
    selection: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JsonB, default=list)
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JsonB, default=list)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
