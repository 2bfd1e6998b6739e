"""Webhooks a user registered, and the outbox of their deliveries (ADR 0016).

`Webhook.secret` holds SecretBox ciphertext only (the `whsec_…` signing secret is shown once). A
`WebhookDelivery` row is written in the transaction of the event it announces, so a committed event always has its
deliveries and a rolled-back one never does; the worker sends due rows (`infrahaus_domain.webhooks.outbox`).
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from infrahaus_domain.keys import register_encrypted_column
from infrahaus_domain.models.base import UUIDv7AuditBase

JsonB = JSON().with_variant(JSONB(), "postgresql")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class Webhook(UUIDv7AuditBase):
    __tablename__ = "webhooks"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    # Webhook event types, or ["*"] for all of them.
    events: Mapped[list[str]] = mapped_column(JsonB)
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(Text)


register_encrypted_column(Webhook.secret)


class WebhookDelivery(UUIDv7AuditBase):
    """One message to one webhook. Its id is the Standard Webhooks `webhook-id` (the same on every attempt, so a
    receiver can drop duplicates); `payload` is the exact body, fixed when the row is written."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The worker's claim: due pending rows in order of their next attempt.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
    )

    webhook_id: Mapped[UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    # The audit event that caused it (null for a test delivery and for events outside the audit trail).
    event_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    response_code: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    # Every attempt: {"attempt", "at", "response_code", "latency_ms", "error"} (bounded by the attempt limit).
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JsonB, default=list)
