"""Issue 13, item 6 (accounts): sessions and tokens of a user whose Proxmox account is disabled, expired or deleted
stop working within a bounded time; a later login or an account found active again lifts that."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from litestar import Litestar
from sqlalchemy import update

from infrahaus_api.auth import AUTH_CACHE_SECONDS
from infrahaus_domain.models.users import User
from infrahaus_domain.settings import AuthServer, Settings
from infrahaus_pvesim import RunningNode, SimToken, Simulator
from infrahaus_worker.accounts import revalidate_accounts
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import api_client, assert_problem, login

ACCOUNTS_ID, ACCOUNTS_SECRET = "root@pam!accounts", "0c3a1f6e-8d2b-4c1e-9a7f-5b6d4e3c2a10"


@pytest.fixture
def auth_servers(sim_node: RunningNode) -> tuple[AuthServer, ...]:
    """The simulator as login server, with an accounts token (Sys.Audit on /access/groups only)."""
    return (
        AuthServer(
            name="pve",
            url=sim_node.api_url,
            fingerprint=sim_node.fingerprint,
            accounts_token=f"{ACCOUNTS_ID}={ACCOUNTS_SECRET}",
        ),
    )


@pytest.fixture
def accounts(simulator: Simulator) -> Simulator:
    """The simulator with alice@pve and the accounts token."""
    simulator.config.users["alice@pve"] = "wonderland"
    simulator.config.tokens[ACCOUNTS_ID] = SimToken(
        secret=ACCOUNTS_SECRET, privsep=True, privileges={"/access/groups": {"Sys.Audit"}}
    )
    return simulator


@pytest.fixture
async def worker(settings: Settings, stub_broker: StubBroker) -> AsyncIterator[WorkerContext]:
    ctx = await WorkerContext.open(settings, stub_broker)
    try:
        yield ctx
    finally:
        await ctx.aclose()


async def _due_now(worker: WorkerContext) -> None:
    """Make every account due for its next check (as if `INFRAHAUS_AUTH_REVALIDATE_SECONDS` had passed)."""
    async with worker.unit() as u:
        await u.session.execute(update(User).values(account_checked_at=datetime.now(UTC) - timedelta(days=1)))


async def _refused_soon(client: httpx.AsyncClient) -> httpx.Response:
    """`GET /api/auth/me` until it is refused; the bound asserted is well below the auth cache's lifetime, so only
    the invalidation the worker published can have ended a credential this API process had cached."""
    deadline = time.monotonic() + AUTH_CACHE_SECONDS / 2
    while True:
        response = await client.get("/api/auth/me")
        if response.status_code == 401 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


@pytest.fixture
async def alice(app: Litestar, accounts: Simulator) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """alice's cookie session (logged in through the simulator) and a bearer client with a token that session
    created; both used once (so this API process has them cached)."""
    async with api_client(app) as session:
        csrf = await login(session, "alice@pve", "wonderland")
        session.headers["X-CSRF-Token"] = csrf
        created = await session.post("/api/auth/tokens", json={"name": "automation"})
        assert created.status_code == 201, created.text
        async with api_client(app, {"Authorization": f"Bearer {created.json()['token']}"}) as bearer:
            for client in (session, bearer):
                me = await client.get("/api/auth/me")
                assert me.status_code == 200, me.text
                assert me.json()["user"]["userid"] == "alice@pve"
            yield session, bearer


async def test_a_disabled_account_loses_its_session_and_token_and_a_new_login_restores_them(
    app: Litestar, accounts: Simulator, worker: WorkerContext, alice: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    session, bearer = alice
    first = await revalidate_accounts(worker)
    # Logging in counted as a check: nothing is due yet.
    assert (first.checked, first.disabled, first.failed_servers) == (0, [], [])
    await _due_now(worker)
    active = await revalidate_accounts(worker)
    assert (active.checked, active.disabled) == (1, [])
    assert (await bearer.get("/api/auth/me")).status_code == 200

    accounts.access.set_user_enabled("alice@pve", False)
    not_yet = await revalidate_accounts(worker)
    assert not_yet.checked == 0  # checked a moment ago: the next check waits for its period
    await _due_now(worker)
    disabled = await revalidate_accounts(worker)
    assert disabled.checked == 1
    assert len(disabled.disabled) == 1
    assert_problem(await _refused_soon(bearer), 401, "unauthenticated")
    assert_problem(await _refused_soon(session), 401, "unauthenticated")
    # Proxmox itself refuses the login while the account is disabled.
    assert (
        await api_client(app).post("/api/auth/login", json={"username": "alice@pve", "password": "wonderland"})
    ).status_code == 401

    # Enabled again: the next check lifts the mark and the token works again (the session was ended).
    accounts.access.set_user_enabled("alice@pve", True)
    await _due_now(worker)
    again = await revalidate_accounts(worker)
    assert (again.checked, again.disabled) == (1, [])
    assert (await bearer.get("/api/auth/me")).status_code == 200
    assert (await session.get("/api/auth/me")).status_code == 401


async def test_an_expired_or_deleted_account_is_refused_and_a_login_lifts_the_mark(
    app: Litestar, accounts: Simulator, worker: WorkerContext, alice: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    _, bearer = alice
    accounts.config.user_expire["alice@pve"] = int(time.time()) - 1
    await _due_now(worker)
    assert len((await revalidate_accounts(worker)).disabled) == 1
    assert_problem(await _refused_soon(bearer), 401, "unauthenticated")

    # A login Proxmox accepts (the expiry lifted) proves the account active: the token works at once.
    del accounts.config.user_expire["alice@pve"]
    relogged = api_client(app)
    async with relogged:
        await login(relogged, "alice@pve", "wonderland")
        assert (await relogged.get("/api/auth/me")).status_code == 200
    assert (await bearer.get("/api/auth/me")).status_code == 200

    accounts.access.delete_user("alice@pve")
    await _due_now(worker)
    assert len((await revalidate_accounts(worker)).disabled) == 1
    assert_problem(await _refused_soon(bearer), 401, "unauthenticated")


async def test_an_auth_server_that_cannot_answer_keeps_the_last_known_state(
    accounts: Simulator,
    worker: WorkerContext,
    alice: tuple[httpx.AsyncClient, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, bearer = alice
    # The accounts token loses its privilege: Proxmox answers 403, which says nothing about alice.
    accounts.config.tokens[ACCOUNTS_ID].privileges = {}
    await _due_now(worker)
    failed = await revalidate_accounts(worker)
    assert (failed.checked, failed.disabled, failed.failed_servers) == (0, [], ["pve"])
    assert (await bearer.get("/api/auth/me")).status_code == 200
    assert (await session.get("/api/auth/me")).status_code == 200
    assert ACCOUNTS_SECRET not in caplog.text
    assert "ProxmoxPermissionError" in caplog.text


async def test_users_without_live_credentials_and_servers_without_an_accounts_token_are_not_asked(
    accounts: Simulator,
    worker: WorkerContext,
    settings: Settings,
    stub_broker: StubBroker,
    alice: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    session, _ = alice
    await _due_now(worker)
    # The login is older than any session can live and the token is revoked: nothing left to end.
    async with worker.unit() as u:
        await u.session.execute(update(User).values(last_login_at=datetime.now(UTC) - timedelta(days=30)))
    tokens = (await session.get("/api/auth/tokens")).json()["items"]
    assert (await session.delete(f"/api/auth/tokens/{tokens[0]['id']}")).status_code == 204
    before = len(accounts.nodes[0].requests)
    assert (await revalidate_accounts(worker)).checked == 0
    assert len(accounts.nodes[0].requests) == before

    plain: Any = settings.replace(auth={"servers": (AuthServer(name="pve", url=accounts.nodes[0].api_url),)})
    ctx = await WorkerContext.open(plain, stub_broker)
    try:
        assert (await revalidate_accounts(ctx)).checked == 0
    finally:
        await ctx.aclose()
