"""Request and response shapes of `/api/webhooks`. The signing secret appears only in `WebhookCreated` and
`WebhookSecret` (the answers of a creation and of a rotation)."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from infrahaus_domain.allowlist import whole

# The types a webhook can subscribe to (the README's "Webhooks" lists what each one means).
WebhookEventType = Literal[
    "container.created",
    "container.ready",
    "container.failed",
    "container.deleted",
    "operation.succeeded",
    "operation.failed",
    "drift.detected",
    "node.unreachable",
]
# What a delivery can carry: the subscribable types and the test message of `POST …/test`.
DeliveryEventType = WebhookEventType | Literal["webhook.test"]
EventFilter = WebhookEventType | Literal["*"]
DeliveryStatus = Literal["pending", "delivered", "failed"]

Url = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2048,
        pattern=whole(r"https?://[^\s\x00-\x1f\x7f]+"),
        description="Where deliveries are POSTed: an http or https URL the server's outbound policy allows.",
        extra={"message": "Give an http:// or https:// URL without spaces."},
        examples=["https://hooks.example.com/infrahaus"],
    ),
]
Events = Annotated[
    list[EventFilter],
    msgspec.Meta(
        min_length=1,
        max_length=16,
        description='Event types to deliver; `["*"]` (the default) is every type.',
    ),
]
Description = Annotated[
    str, msgspec.Meta(max_length=500, pattern=whole(r"[^\x00-\x1f\x7f]*"), description="Free text.")
]


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url
    events: Events = msgspec.field(default_factory=lambda: ["*"])
    description: Description | None = None


class WebhookUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url | msgspec.UnsetType = msgspec.UNSET
    events: Events | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookRead(msgspec.Struct, kw_only=True):
    """A registered webhook (never its secret)."""

    id: UUID
    url: str
    events: list[EventFilter]
    description: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead, kw_only=True):
    """The new webhook and its signing secret, shown this once (Standard Webhooks `whsec_<base64>`)."""

    secret: Annotated[str, msgspec.Meta(description="`whsec_` and the base64 key; shown once.")]


class WebhookSecret(msgspec.Struct, kw_only=True):
    """The webhook's new signing secret, shown this once; the old one no longer signs anything."""

    id: UUID
    secret: str


class WebhookPage(msgspec.Struct, kw_only=True):
    items: list[WebhookRead]
    next_cursor: str | None


class DeliveryAttempt(msgspec.Struct, kw_only=True):
    attempt: int
    at: datetime
    response_code: int | None
    latency_ms: int | None
    error: str | None


class DeliveryRead(msgspec.Struct, kw_only=True):
    """One message to the webhook. `id` is its `webhook-id` header (the same on every attempt)."""

    id: UUID
    webhook_id: UUID
    event_type: DeliveryEventType
    event_id: int | None
    status: Annotated[
        DeliveryStatus,
        msgspec.Meta(
            description="`pending` (waiting for its next attempt), `delivered` (a 2xx answer), `failed` (out of "
            "attempts, or the outbound policy refuses the URL)."
        ),
    ]
    attempts: int
    response_code: Annotated[int | None, msgspec.Meta(description="The HTTP status of the last attempt.")]
    latency_ms: Annotated[int | None, msgspec.Meta(description="How long the last attempt took.")]
    last_error: str | None
    next_attempt_at: Annotated[datetime | None, msgspec.Meta(description="When a pending delivery is tried next.")]
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[DeliveryAttempt]


class DeliveryPage(msgspec.Struct, kw_only=True):
    """Deliveries, newest first."""

    items: list[DeliveryRead]
    next_cursor: str | None
