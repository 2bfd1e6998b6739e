"""The first answers to creating POSTs sent with an `Idempotency-Key` (see `infrahaus_domain.idempotency`)."""

from typing import Any
from uuid import UUID

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from infrahaus_domain.models.base import UUIDv7AuditBase
from infrahaus_domain.models.containers import JsonB


class IdempotencyKey(UUIDv7AuditBase):
    """One key of one user, claimed by the first request that sent it and replayed for 24 hours.

    A key belongs to one request: `scope` is the endpoint it was first used on (method and path, ids included) and
    `request_hash` the SHA-256 of scope and canonical body, so the same key on another endpoint or with another body
    is refused. `response_body` stays null while the first request is still running.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),)

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer, default=0)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    location: Mapped[str | None] = mapped_column(String(255), default=None)
