"""Registering webhooks (`/api/webhooks`): the URL is checked against the outbound policy when it is given, the
signing secret is generated here, stored encrypted with the keyring and answered once."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.models.webhooks import Webhook, WebhookDelivery
from infrahaus_domain.outbound import OutboundPolicy, UnresolvableHostError
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.ports import EventBus
from infrahaus_domain.reads import to_read
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.webhooks import outbox, signing
from infrahaus_domain.webhooks.schemas import (
    DeliveryPage,
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
)


def _events(filters: list[str]) -> list[str]:
    # "*" anywhere means everything; otherwise each type once, in the order given.
    return ["*"] if "*" in filters else list(dict.fromkeys(filters))


class WebhookRepository(SQLAlchemyAsyncRepository[Webhook]):
    model_type = Webhook


class WebhookService(DomainService[Webhook, WebhookRepository]):
    repository_type = WebhookRepository

    def __init__(self, session: AsyncSession, *, box: SecretBox, policy: OutboundPolicy, bus: EventBus) -> None:
        super().__init__(session)
        self.box = box
        self.policy = policy
        self.bus = bus

    async def register(self, user_id: UUID, data: WebhookCreate) -> WebhookCreated:
        """Register a webhook; its secret is in the answer only (stored encrypted)."""
        await self._check_url(data.url)
        secret = signing.generate_secret()
        row = Webhook(
            user_id=user_id,
            url=data.url,
            events=_events(list(data.events)),
            description=data.description,
            enabled=True,
            secret=self.box.encrypt(secret),
        )
        self.session.add(row)
        await self.session.flush()
        return to_read(row, WebhookCreated, secret=secret)

    async def page(self, user_id: UUID, *, limit: int = 50, cursor: str | None = None) -> WebhookPage:
        """The user's webhooks, oldest first (ids are UUIDv7)."""
        stmt = select(Webhook).where(Webhook.user_id == user_id)
        if cursor is not None:
            stmt = stmt.where(Webhook.id > decode_cursor(cursor, tuple[UUID])[0])
        rows = list((await self.session.scalars(stmt.order_by(Webhook.id).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return WebhookPage(
            items=[to_read(r, WebhookRead) for r in rows],
            next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
        )

    async def read(self, user_id: UUID, webhook_id: UUID) -> WebhookRead:
        return to_read(await self._owned(user_id, webhook_id), WebhookRead)

    async def change(self, user_id: UUID, webhook_id: UUID, data: WebhookUpdate) -> WebhookRead:
        row = await self._owned(user_id, webhook_id)
        if data.url is not msgspec.UNSET:
            await self._check_url(data.url)
            row.url = data.url
        if data.events is not msgspec.UNSET:
            row.events = _events(list(data.events))
        if data.description is not msgspec.UNSET:
            row.description = data.description
        if data.enabled is not msgspec.UNSET:
            row.enabled = data.enabled
        row.updated_at = datetime.now(UTC)
        await self.session.flush()
        return to_read(row, WebhookRead)

    async def remove(self, user_id: UUID, webhook_id: UUID) -> None:
        """Delete the webhook and its deliveries (pending ones are never sent)."""
        row = await self._owned(user_id, webhook_id)
        await self.session.delete(row)
        await self.session.flush()

    async def rotate_secret(self, user_id: UUID, webhook_id: UUID) -> WebhookSecret:
        """A new signing secret, shown once; every attempt from now on (retries included) is signed with it."""
        row = await self._owned(user_id, webhook_id)
        secret = signing.generate_secret()
        row.secret = self.box.encrypt(secret)
        row.updated_at = datetime.now(UTC)
        await self.session.flush()
        return WebhookSecret(id=row.id, secret=secret)

    async def test(self, user_id: UUID, webhook_id: UUID) -> DeliveryRead:
        """Queue a `webhook.test` delivery to this webhook, whatever it subscribes to (a disabled webhook's
        deliveries wait until it is enabled again)."""
        row = await self._owned(user_id, webhook_id)
        await self._check_url(row.url)
        data: dict[str, Any] = {"webhook_id": str(row.id), "message": "A test delivery from infrahaus."}
        created = WebhookDelivery(
            webhook_id=row.id,
            user_id=user_id,
            event_type="webhook.test",
            event_id=None,
            payload=outbox.body("webhook.test", data),
            status="pending",
            attempts=0,
            next_attempt_at=datetime.now(UTC),
            attempt_log=[],
        )
        self.session.add(created)
        await self.session.flush()
        outbox.wake_after_commit(self.session, self.bus)
        return to_read(created, DeliveryRead)

    async def deliveries(
        self,
        user_id: UUID,
        webhook_id: UUID,
        *,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """The webhook's deliveries, newest first."""
        await self._owned(user_id, webhook_id)
        stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        if cursor is not None:
            stmt = stmt.where(WebhookDelivery.id < decode_cursor(cursor, tuple[UUID])[0])
        rows = list((await self.session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return DeliveryPage(
            items=[to_read(r, DeliveryRead) for r in rows],
            next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
        )

    async def _owned(self, user_id: UUID, webhook_id: UUID) -> Webhook:
        row = await self.session.get(Webhook, webhook_id)
        if row is None or row.user_id != user_id:
            raise NotFoundError("Webhook not found.")
        return row

    async def _check_url(self, url: str) -> None:
        """The URL's host must be one the outbound policy allows (`OutboundDeniedError`, 422 `outbound_denied`);
        it is checked again before every attempt."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValidationFailed([FieldError(field="url", message="Give an http:// or https:// URL.", code="format")])
        if parsed.userinfo:
            raise ValidationFailed(
                [FieldError(field="url", message="Credentials in the URL are not accepted.", code="invalid")]
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            await self.policy.resolve(parsed.host, port)
        except UnresolvableHostError:
            raise ValidationFailed(
                [FieldError(field="url", message="The URL's host does not resolve to an address.", code="invalid")]
            ) from None
