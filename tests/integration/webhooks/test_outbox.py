"""The outbox on both databases: deliveries commit or roll back with their event's transaction, a claim takes a due
delivery for one attempt under a lease (PostgreSQL: concurrent claimers skip each other's locked rows), failures are
rescheduled with exponential backoff and fail at the attempt limit, a delivery whose worker died is due again when
its lease ends."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain import migrations
from infrahaus_domain.db import create_engine
from infrahaus_domain.models.users import User
from infrahaus_domain.models.webhooks import Webhook, WebhookDelivery
from infrahaus_domain.settings import WebhookSettings
from infrahaus_domain.webhooks import outbox

SETTINGS = WebhookSettings(backoff_base=10, backoff_max=25, max_attempts=3, timeout=5)


@pytest.fixture(params=["postgresql", "sqlite"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, db_url: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = db_url if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"
    engine = create_engine(url)
    if request.param == "sqlite":
        await migrations.upgrade(engine)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def hook(sessions: async_sessionmaker[AsyncSession], events: list[str]) -> tuple[UUID, UUID]:
    async with sessions() as session:
        user = User(auth_server="pve", userid="alice@pam", display_name="alice")
        session.add(user)
        await session.flush()
        row = Webhook(user_id=user.id, url="http://127.0.0.1:9/", events=events, enabled=True, secret="v1:k:x")
        session.add(row)
        await session.commit()
        return user.id, row.id


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


async def make_due(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Move every pending delivery's next attempt into the past (the clock moving on)."""
    async with sessions() as session:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(update(WebhookDelivery).values(next_attempt_at=past))
        await session.commit()


async def test_deliveries_follow_their_transaction_and_subscriptions(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    user_id, _ = await hook(sessions, ["container.ready"])
    async with sessions() as session:
        await outbox.enqueue(session, user_id, ["container.ready", "operation.succeeded"], {"x": 1}, event_id=7)
        await session.rollback()
    assert await count(sessions) == 0
    async with sessions() as session:
        await outbox.enqueue(session, user_id, ["container.ready", "operation.succeeded"], {"x": 1}, event_id=7)
        await session.commit()
    async with sessions() as session:
        [row] = (await session.scalars(select(WebhookDelivery))).all()
    assert (row.event_type, row.event_id, row.status, row.attempts) == ("container.ready", 7, "pending", 0)


async def test_claim_lease_backoff_and_attempt_limit(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id, _ = await hook(sessions, ["*"])
    async with sessions() as session:
        [written] = await outbox.enqueue(session, user_id, ["drift.detected"], {})
        await session.commit()

    async with sessions() as session:
        [claim] = await outbox.claim_due(session, SETTINGS, limit=10)
        await session.commit()
    assert (claim.id, claim.attempt) == (written.id, 1)
    async with sessions() as session:
        # Claimed: not due again until its lease ends, even for another worker.
        assert await outbox.claim_due(session, SETTINGS, limit=10) == []
        row = await session.get(WebhookDelivery, claim.id)
        assert row is not None
        assert row.next_attempt_at is not None
        assert row.next_attempt_at - datetime.now(UTC) > timedelta(seconds=SETTINGS.timeout)

    failure = outbox.Outcome(response_code=503, latency_ms=4, error=None)
    async with sessions() as session:
        assert await outbox.finish(session, SETTINGS, claim, failure) == "pending"
        await session.commit()
        row = await session.get(WebhookDelivery, claim.id)
        assert row is not None
        assert row.next_attempt_at is not None
        wait = row.next_attempt_at - datetime.now(UTC)
        assert timedelta(seconds=8) < wait <= timedelta(seconds=10)  # backoff_base after the first failure

    await make_due(sessions)
    async with sessions() as session:
        [second] = await outbox.claim_due(session, SETTINGS, limit=10)
        await session.commit()
    async with sessions() as session:
        # A late answer of the first attempt changes nothing any more.
        assert await outbox.finish(session, SETTINGS, claim, failure) is None
        assert await outbox.finish(session, SETTINGS, second, failure) == "pending"
        await session.commit()
        row = await session.get(WebhookDelivery, claim.id)
        assert row is not None
        assert row.next_attempt_at is not None
        assert timedelta(seconds=18) < row.next_attempt_at - datetime.now(UTC) <= timedelta(seconds=20)

    # The third (last) attempt's worker dies: when the lease ends, the delivery fails instead of a fourth attempt.
    await make_due(sessions)
    async with sessions() as session:
        [third] = await outbox.claim_due(session, SETTINGS, limit=10)
        await session.commit()
    assert third.attempt == SETTINGS.max_attempts
    await make_due(sessions)
    async with sessions() as session:
        assert await outbox.claim_due(session, SETTINGS, limit=10) == []
        await session.commit()
        row = await session.get(WebhookDelivery, claim.id, populate_existing=True)
        assert row is not None
        assert (row.status, row.attempts) == ("failed", SETTINGS.max_attempts)
        assert [entry["response_code"] for entry in row.attempt_log] == [503, 503, None]
        assert "interrupted" in row.attempt_log[-1]["error"]
        assert row.last_error is not None
        assert "interrupted" in row.last_error


async def test_a_disabled_webhook_holds_its_deliveries(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id, hook_id = await hook(sessions, ["*"])
    async with sessions() as session:
        await outbox.enqueue(session, user_id, ["container.created"], {})
        await session.execute(update(Webhook).values(enabled=False))
        await session.commit()
    async with sessions() as session:
        assert await outbox.claim_due(session, SETTINGS, limit=10) == []
        assert await outbox.next_due(session) is None
        await session.execute(update(Webhook).where(Webhook.id == hook_id).values(enabled=True))
        await session.commit()
    async with sessions() as session:
        assert len(await outbox.claim_due(session, SETTINGS, limit=10)) == 1


async def test_concurrent_claims_skip_locked_rows(db_url: str) -> None:
    engine = create_engine(db_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        user_id, _ = await hook(sessions, ["*"])
        async with sessions() as session:
            await outbox.enqueue(session, user_id, ["container.created", "container.ready"], {})
            await session.commit()
        async with sessions() as first, sessions() as second:
            taken = await outbox.claim_due(first, SETTINGS, limit=1)
            # The first claimer still holds its row lock: the second skips that row instead of waiting.
            other = await outbox.claim_due(second, SETTINGS, limit=10)
            assert len(taken) == len(other) == 1
            assert taken[0].id != other[0].id
            await first.commit()
            await second.commit()
    finally:
        await engine.dispose()
