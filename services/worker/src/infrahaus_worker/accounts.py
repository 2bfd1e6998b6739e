"""The account re-validation loop: every user with live credentials has their Proxmox account re-read every
`INFRAHAUS_AUTH_REVALIDATE_SECONDS` (`infrahaus_domain.users.accounts` says why and what follows)."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import msgspec

from infrahaus_domain.users.accounts import ACCOUNT_TOPIC, AccountCheckError, read_account
from infrahaus_worker.context import WorkerContext

log = logging.getLogger("infrahaus.worker.accounts")


class AccountsReport(msgspec.Struct, kw_only=True):
    checked: int = 0
    # User ids newly marked inactive / found active again by this pass.
    disabled: list[str] = msgspec.field(default_factory=list)
    # Auth servers whose check failed in this pass (their users keep their last known state).
    failed_servers: list[str] = msgspec.field(default_factory=list)


def warn_unchecked_servers(ctx: WorkerContext) -> None:
    """Say once at start which auth servers have no accounts token: their users' credentials are not re-validated."""
    for server in ctx.settings.auth.configured:
        if server.accounts_token is None:
            log.warning(
                "auth server %s has no accounts token: sessions and tokens of its users are not re-validated "
                "against Proxmox (SECURITY.md, account re-validation)",
                server.name,
            )


async def revalidate_accounts(ctx: WorkerContext) -> AccountsReport:
    """One pass over the users due for a check; safe to run in several workers at once (each user is claimed)."""
    report = AccountsReport()
    now = datetime.now(UTC)
    checked_before = now - timedelta(seconds=ctx.settings.auth.revalidate_seconds)
    logged_in_after = now - timedelta(seconds=ctx.settings.sessions.absolute_seconds)
    for server in ctx.settings.auth.configured:
        if server.accounts_token is None:
            continue
        async with ctx.unit() as u:
            due = await u.users.due_for_account_check(
                server.name, checked_before=checked_before, logged_in_after=logged_in_after
            )
        for user_id, userid, seen in due:
            async with ctx.unit() as u:
                if not await u.users.claim_account_check(user_id, seen, now):
                    continue  # another worker has it
            try:
                state = await read_account(server, userid, resolver=ctx.access.resolve_api)
            except AccountCheckError as exc:
                # One failure stands for the server: the rest of its users wait for the next pass.
                log.warning("account re-validation skipped for this pass: %s", exc)
                report.failed_servers.append(server.name)
                break
            report.checked += 1
            async with ctx.unit() as u:
                newly_disabled = await u.users.record_account(user_id, active=state.active, now=now)
            if newly_disabled:
                # After the commit: every API process drops the sessions and tokens it verified.
                await ctx.ports.invalidation.publish(ACCOUNT_TOPIC, str(user_id))
                report.disabled.append(str(user_id))
                log.warning(
                    "user %s on auth server %s: Proxmox account %s; its sessions and tokens are refused",
                    userid,
                    server.name,
                    "disabled or expired" if state.exists else "deleted",
                )
    return report


async def revalidate_accounts_forever(ctx: WorkerContext) -> None:
    """A pass every tenth of `INFRAHAUS_AUTH_REVALIDATE_SECONDS` (at most every reconcile interval), until
    cancelled: each user is still read only once per period, but a period never stretches by a whole one."""
    warn_unchecked_servers(ctx)
    if not any(s.accounts_token for s in ctx.settings.auth.configured):
        return
    pause = max(1.0, min(ctx.settings.auth.revalidate_seconds / 10, ctx.timings.reconcile_interval))
    while True:
        try:
            await revalidate_accounts(ctx)
        except Exception:
            log.exception("account re-validation pass failed")
        await asyncio.sleep(pause)
