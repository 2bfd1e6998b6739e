"""The webhook delivery loop, run for the life of every worker process beside the reconciler (ADR 0016).

It takes due deliveries from the outbox (`infrahaus_domain.webhooks.outbox`), sends them concurrently (at most
`INFRAHAUS_WEBHOOK_CONCURRENCY`), records each answer, and sleeps until the next delivery is due, the poll interval
ends, or a committed delivery wakes it through the event bus. Connections go through the process's outbound policy
(resolved and checked again before every attempt), never follow redirects and never outlive the timeout.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx

from infrahaus_domain.webhooks import outbox
from infrahaus_worker.context import WorkerContext

log = logging.getLogger("infrahaus.worker.webhooks")


def build_client(ctx: WorkerContext) -> httpx.AsyncClient:
    """The deliveries' HTTP client: every connection through the outbound policy, no redirects."""
    return httpx.AsyncClient(
        transport=ctx.access.policy.transport(),
        follow_redirects=False,
        timeout=ctx.settings.webhooks.timeout,
        headers={"user-agent": "infrahaus-webhooks"},
    )


async def deliver_due(ctx: WorkerContext, client: httpx.AsyncClient) -> int:
    """One pass: claim due deliveries, send them, record the answers; how many were attempted."""
    settings = ctx.settings.webhooks
    async with ctx.unit() as u:
        claims = await outbox.claim_due(u.session, settings, limit=settings.concurrency)

    async def attempt(claim: outbox.Claim) -> None:
        result = await outbox.send(client, ctx.box, claim)
        async with ctx.unit() as u:
            status = await outbox.finish(u.session, settings, claim, result)
        if status == "failed":
            log.warning("webhook delivery %s failed after %d attempts: %s", claim.id, claim.attempt, result.error)

    await asyncio.gather(*(attempt(claim) for claim in claims))
    return len(claims)


async def _wait(ctx: WorkerContext, woken: asyncio.Event) -> None:
    """Until the next delivery is due, the poll interval ends, or a wake-up arrives."""
    timeout = ctx.settings.webhooks.poll_interval
    async with ctx.unit() as u:
        due = await outbox.next_due(u.session)
    if due is not None:
        timeout = max(0.0, min(timeout, (due - datetime.now(UTC)).total_seconds()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(woken.wait(), timeout)


async def _listen(ctx: WorkerContext, woken: asyncio.Event) -> None:
    """Set `woken` on every wake-up; resubscribes after a broken subscription (the poll covers the gap)."""
    while True:
        try:
            subscription: contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]
            subscription = ctx.ports.events.subscribe(outbox.WAKE_CHANNEL)
            async with subscription as messages:
                woken.set()  # anything committed while not subscribed
                async for _ in messages:
                    woken.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("webhook wake-up subscription lost; polling until it is back", exc_info=True)
        await asyncio.sleep(ctx.settings.webhooks.poll_interval)


async def deliver_forever(ctx: WorkerContext) -> None:
    """Run delivery passes until cancelled; a failing pass is logged and retried after the poll interval."""
    woken = asyncio.Event()
    listener = asyncio.ensure_future(_listen(ctx, woken))
    try:
        async with build_client(ctx) as client:
            while True:
                # Cleared before the pass: a wake-up arriving during it makes the next wait return at once.
                woken.clear()
                try:
                    if await deliver_due(ctx, client) >= ctx.settings.webhooks.concurrency:
                        continue  # more may be due right now
                    await _wait(ctx, woken)
                except Exception:
                    log.exception("webhook delivery pass failed")
                    await asyncio.sleep(ctx.settings.webhooks.poll_interval)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
