"""The webhook outbox: deliveries written with the event that causes them, sent by the worker (ADR 0016).

- **Enqueue** (`enqueue_for_event`, `enqueue`): in the caller's transaction, one `webhook_deliveries` row per
  subscribed webhook of the event's owner. The event and its deliveries commit (or roll back) together; nothing is
  sent before the commit, and nothing is lost if the process dies after it. After the commit the worker is woken
  through the event bus (`WAKE_CHANNEL`); a lost wake-up only delays the send to the next poll.
- **Claim** (`claim_due`): a worker takes due pending rows with `SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL; on
  SQLite, the embedded mode, the clause is dropped and SQLite's single writer serialises claims), counts the attempt
  and moves `next_attempt_at` a lease ahead, then commits before connecting anywhere. A worker killed mid-send
  leaves the row pending: it is due again when the lease ends, and another worker sends it (at least once).
- **Finish** (`finish`): a 2xx answer delivers; anything else schedules the next attempt after an exponential
  backoff, until the attempt limit fails it. A URL the outbound policy refuses at send time fails at once.

Sending never happens inside a transaction, and enqueueing never waits for the network: an operation is never
blocked by a webhook.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.after_commit import after_commit
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.models.webhooks import Webhook, WebhookDelivery
from infrahaus_domain.outbound import OutboundDeniedError, UnresolvableHostError
from infrahaus_domain.ports import EventBus
from infrahaus_domain.settings import WebhookSettings
from infrahaus_domain.webhooks import signing

log = logging.getLogger("infrahaus.webhooks")

# Published (empty) after a transaction that wrote deliveries commits: wakes the workers' delivery loops.
WAKE_CHANNEL = "webhooks:due"
# Operation success events of the audit trail (besides `created` and `deleted`, which say more).
_SUCCEEDED = frozenset(
    {
        "started",
        "stopped",
        "restarted",
        "services_refreshed",
        "synced",
        "snapshot_created",
        "snapshot_rolled_back",
        "snapshot_deleted",
    }
)
# Failure codes that say the node itself could not be reached.
_NODE_UNREACHABLE = frozenset({"node_unreachable", "ssh_unreachable"})
_ERROR_MAX = 500


def webhook_types(event_type: str, metadata: dict[str, Any], operation_id: UUID | None) -> list[str]:
    """The webhook event types an audit event announces (none for progress and bookkeeping events)."""
    kind = metadata.get("kind")
    if event_type == "queued":
        return ["container.created"] if kind == "create" else []
    if event_type == "created":
        return ["container.ready", "operation.succeeded"]
    if event_type == "deleted":
        return ["container.deleted", "operation.succeeded"] if operation_id is not None else ["container.deleted"]
    if event_type in _SUCCEEDED and operation_id is not None:
        return ["operation.succeeded"]
    if event_type == "failed":
        found = ["operation.failed"]
        if kind == "create":
            found.append("container.failed")
        if metadata.get("code") in _NODE_UNREACHABLE:
            found.append("node.unreachable")
        return found
    return []


def _subscribed(filters: list[str], event_type: str) -> bool:
    return "*" in filters or event_type in filters


def body(event_type: str, data: dict[str, Any], at: datetime | None = None) -> str:
    """The JSON body of a delivery: `{type, timestamp, data}` (the Standard Webhooks payload structure)."""
    stamp = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return msgspec.json.encode({"type": event_type, "timestamp": stamp, "data": data}).decode()


async def enqueue(
    session: AsyncSession,
    user_id: UUID,
    types: list[str],
    data: dict[str, Any],
    *,
    event_id: int | None = None,
    bus: EventBus | None = None,
    webhook_id: UUID | None = None,
) -> list[WebhookDelivery]:
    """Write one delivery per (enabled webhook of `user_id` subscribed to a type, type) in the caller's
    transaction; `webhook_id` limits it to that webhook (a test delivery, sent whatever it subscribes to)."""
    if not types:
        return []
    stmt = select(Webhook.id, Webhook.events).where(Webhook.user_id == user_id, Webhook.enabled.is_(True))
    if webhook_id is not None:
        stmt = stmt.where(Webhook.id == webhook_id)
    hooks = (await session.execute(stmt)).all()
    if not hooks:
        return []
    now = datetime.now(UTC)
    rows = [
        WebhookDelivery(
            webhook_id=hook_id,
            user_id=user_id,
            event_type=event_type,
            event_id=event_id,
            payload=body(event_type, data, now),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            attempt_log=[],
        )
        for event_type in types
        for hook_id, filters in hooks
        if webhook_id is not None or _subscribed(list(filters), event_type)
    ]
    if not rows:
        return []
    session.add_all(rows)
    await session.flush()
    if bus is not None:
        wake_after_commit(session, bus)
    return rows


def wake_after_commit(session: AsyncSession, bus: EventBus) -> None:
    """Wake the delivery loops once the deliveries just written are committed."""
    after_commit(session, lambda: bus.publish(WAKE_CHANNEL, b""))


async def enqueue_for_event(
    session: AsyncSession,
    *,
    user_id: UUID,
    event_type: str,
    metadata: dict[str, Any],
    operation_id: UUID | None,
    event_id: int,
    data: dict[str, Any],
    bus: EventBus | None,
) -> None:
    """The deliveries an audit event causes (called by `EventService.record`, in its transaction)."""
    types = webhook_types(event_type, metadata, operation_id)
    if types:
        await enqueue(session, user_id, types, data, event_id=event_id, bus=bus)


# ---------------------------------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class Claim:
    """A delivery taken for one attempt: what to send, and where."""

    id: UUID
    attempt: int
    url: str
    secret_token: str
    payload: str


@dataclass(frozen=True)
class Outcome:
    response_code: int | None
    latency_ms: int | None
    error: str | None
    # No retry will help (the outbound policy refuses the URL).
    final: bool = False

    @property
    def ok(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300


def lease(settings: WebhookSettings) -> timedelta:
    """How long a claimed delivery stays with its worker before it is due again (the worker is presumed lost)."""
    return timedelta(seconds=settings.timeout * 2 + 5)


def backoff(settings: WebhookSettings, attempt: int) -> timedelta:
    """The wait after failed attempt number `attempt` (1-based): base * 2^(attempt-1), at most `backoff_max`."""
    return timedelta(seconds=min(settings.backoff_max, settings.backoff_base * 2 ** (attempt - 1)))


async def claim_due(session: AsyncSession, settings: WebhookSettings, *, limit: int) -> list[Claim]:
    """Take up to `limit` due deliveries of enabled webhooks for one attempt each (see the module docstring).
    The caller commits before sending."""
    now = datetime.now(UTC)
    stmt = (
        select(WebhookDelivery, Webhook.url, Webhook.secret)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            Webhook.enabled.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    claims: list[Claim] = []
    for row, url, secret in (await session.execute(stmt)).all():
        _note_interrupted(row)
        if row.attempts >= settings.max_attempts:
            # Its last attempt's worker died before recording an answer.
            row.status = "failed"
            row.next_attempt_at = None
            row.last_error = "The last attempt was interrupted: the worker sending it was lost."
            continue
        row.attempts += 1
        row.last_attempt_at = now
        row.next_attempt_at = now + lease(settings)
        claims.append(Claim(id=row.id, attempt=row.attempts, url=url, secret_token=secret, payload=row.payload))
    await session.flush()
    return claims


def _note_interrupted(row: WebhookDelivery) -> None:
    """A claimed attempt that never recorded an outcome (its worker died) goes into the log as interrupted."""
    if row.attempts and (not row.attempt_log or row.attempt_log[-1].get("attempt") != row.attempts):
        at = row.last_attempt_at or datetime.now(UTC)
        entry = {"attempt": row.attempts, "at": at.isoformat(), "response_code": None, "latency_ms": None}
        row.attempt_log = [
            *row.attempt_log,
            {**entry, "error": "The attempt was interrupted: the worker sending it was lost."},
        ]


async def send(client: httpx.AsyncClient, box: SecretBox, claim: Claim) -> Outcome:
    """One attempt: POST the payload, signed now. Never raises for the receiver's or the network's failures."""
    secret = box.decrypt(claim.secret_token)
    content = claim.payload.encode()
    headers = signing.headers(secret, str(claim.id), int(time.time()), content)
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        # The answer's body is never read: a receiver cannot make the worker download anything.
        async with client.stream("POST", claim.url, content=content, headers=headers) as response:
            return Outcome(response_code=response.status_code, latency_ms=elapsed(), error=None)
    except OutboundDeniedError as exc:
        return Outcome(response_code=None, latency_ms=None, error=exc.detail, final=True)
    except UnresolvableHostError as exc:
        return Outcome(response_code=None, latency_ms=elapsed(), error=str(exc))
    except httpx.TimeoutException:
        return Outcome(response_code=None, latency_ms=elapsed(), error="The receiver did not answer in time.")
    except httpx.HTTPError as exc:
        return Outcome(response_code=None, latency_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:_ERROR_MAX])


async def finish(session: AsyncSession, settings: WebhookSettings, claim: Claim, outcome: Outcome) -> str | None:
    """Record an attempt's outcome; the delivery's new status, or None when the attempt was superseded (its lease
    ended and another worker took the delivery over, or the webhook was deleted)."""
    row = await session.get(WebhookDelivery, claim.id, with_for_update=True, populate_existing=True)
    if row is None or row.status != "pending" or row.attempts != claim.attempt:
        return None
    now = datetime.now(UTC)
    row.response_code = outcome.response_code
    row.latency_ms = outcome.latency_ms
    row.last_error = outcome.error[:_ERROR_MAX] if outcome.error else None
    row.attempt_log = [
        *row.attempt_log,
        {
            "attempt": claim.attempt,
            "at": (row.last_attempt_at or now).isoformat(),
            "response_code": outcome.response_code,
            "latency_ms": outcome.latency_ms,
            "error": row.last_error,
        },
    ]
    if outcome.ok:
        row.status = "delivered"
        row.delivered_at = now
        row.next_attempt_at = None
    elif outcome.final or row.attempts >= settings.max_attempts:
        row.status = "failed"
        row.next_attempt_at = None
    else:
        row.next_attempt_at = now + backoff(settings, row.attempts)
    await session.flush()
    return row.status


async def next_due(session: AsyncSession) -> datetime | None:
    """When the earliest pending delivery of an enabled webhook is due (the delivery loop sleeps until then)."""
    found: datetime | None = await session.scalar(
        select(WebhookDelivery.next_attempt_at)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == "pending", Webhook.enabled.is_(True))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
    )
    return found
