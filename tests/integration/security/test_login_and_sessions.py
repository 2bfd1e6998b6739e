"""Login brute force and session fixation, beyond tests/integration/api/test_auth.py.

That module covers the per-username and per-client limits from one client, session rotation and a planted unknown
id, and the cookie flags with `Secure` on. Here: limits across client addresses (a distributed guess on one
account, a second address unaffected, `X-Forwarded-For` not trusted), an attacker's *valid* session fixed in a
victim's browser, and the flags with `Secure` configured off.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from infrahaus_api.app import create_app
from infrahaus_api.auth import SESSION_COOKIE
from infrahaus_domain.settings import Settings
from infrahaus_pvesim import SimNodeConfig, SimulatorConfig
from tests.fixtures.api import BASE_URL, api_client, assert_problem, login, running

pytestmark = pytest.mark.usefixtures("sim_node")


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    """Two Proxmox users: the victim (root@pam) and the attacker (alice@pve)."""
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve")],
        users={"root@pam": "demo", "alice@pve": "alice-pw"},
    )


GOOD = {"username": "root@pam", "password": "demo"}


@asynccontextmanager
async def from_address(app: Litestar, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from `address` (the ASGI peer, what a reverse proxy would not rewrite)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


async def test_guesses_on_one_account_from_many_addresses_are_throttled(settings: Settings) -> None:
    limited = create_app(settings.replace(auth={"login_limit_per_user": 3, "login_limit_per_ip": 100}))
    async with running(limited):
        for n in range(3):
            async with from_address(limited, f"198.51.100.{n + 1}") as http:
                assert (await http.post("/api/auth/login", json={**GOOD, "password": "guess"})).status_code == 401
        async with from_address(limited, "198.51.100.99") as fresh:
            blocked = await fresh.post("/api/auth/login", json=GOOD)
            assert_problem(blocked, 429, "rate_limited")
            assert int(blocked.headers["Retry-After"]) >= 1
            # The answer names no account state: the same 429 for an unknown account under the same limit.
            assert "root@pam" not in blocked.text


async def test_a_throttled_address_does_not_lock_out_others_and_cannot_spoof_its_way_out(settings: Settings) -> None:
    limited = create_app(settings.replace(auth={"login_limit_per_ip": 2, "login_limit_per_user": 100}))
    async with running(limited):
        async with from_address(limited, "203.0.113.7") as attacker:
            for name in ("a@pve", "b@pve"):
                wrong = await attacker.post("/api/auth/login", json={"username": name, "password": "x"})
                assert wrong.status_code == 401
            for forwarded in ("198.51.100.1", "127.0.0.1", "203.0.113.8, 10.0.0.1"):
                spoofed = await attacker.post("/api/auth/login", json=GOOD, headers={"X-Forwarded-For": forwarded})
                assert_problem(spoofed, 429, "rate_limited")
                assert "Retry-After" in spoofed.headers
        async with from_address(limited, "203.0.113.200") as neighbour:
            assert (await neighbour.post("/api/auth/login", json=GOOD)).status_code == 200


async def test_only_failures_count(settings: Settings) -> None:
    limited = create_app(settings.replace(auth={"login_limit_per_ip": 2, "login_limit_per_user": 2}))
    async with running(limited), from_address(limited, "203.0.113.20") as http:
        for _ in range(6):
            assert (await http.post("/api/auth/login", json=GOOD)).status_code == 200


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(settings: Settings) -> None:
    limited = create_app(
        settings.replace(
            auth={"login_limit_per_ip": 2, "login_limit_per_user": 100}, http={"trusted_proxies": ("10.0.0.0/8",)}
        )
    )
    async with running(limited), from_address(limited, "10.1.2.3") as proxy:
        for name in ("a@pve", "b@pve"):
            wrong = {"username": name, "password": "x"}
            assert (
                await proxy.post("/api/auth/login", json=wrong, headers={"X-Forwarded-For": "203.0.113.7"})
            ).status_code == 401
        # The guesser is throttled, whatever it puts left of the address the proxy appended ...
        for chain in ("203.0.113.7", "198.51.100.1, 203.0.113.7", "203.0.113.8, 203.0.113.7, 10.9.9.9"):
            blocked = await proxy.post("/api/auth/login", json=GOOD, headers={"X-Forwarded-For": chain})
            assert_problem(blocked, 429, "rate_limited")
        # ... while another client behind the same proxy is not, and neither is the proxy's own bucket.
        other = await proxy.post("/api/auth/login", json=GOOD, headers={"X-Forwarded-For": "203.0.113.8"})
        assert other.status_code == 200
        assert (await proxy.post("/api/auth/login", json=GOOD)).status_code == 200


async def test_guessing_an_account_slows_it_down_but_never_locks_its_owner_out(settings: Settings) -> None:
    limited = create_app(
        settings.replace(auth={"login_limit_per_user": 2, "login_limit_per_ip": 1000, "login_backoff_max_seconds": 1})
    )
    async with running(limited):
        for n in range(8):
            async with from_address(limited, f"198.51.100.{n + 1}") as guesser:
                answer = await guesser.post("/api/auth/login", json={**GOOD, "password": f"guess-{n}"})
                assert answer.status_code in (401, 429)
                if answer.status_code == 429:
                    assert int(answer.headers["Retry-After"]) <= 1
        # The owner, from elsewhere, waits at most the backoff ceiling and then gets in.
        async with from_address(limited, "192.0.2.50") as owner:
            deadline = asyncio.get_running_loop().time() + 10
            while (answer := await owner.post("/api/auth/login", json=GOOD)).status_code == 429:
                assert int(answer.headers["Retry-After"]) <= 1
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.2)
            assert answer.status_code == 200, answer.text


async def test_an_attackers_valid_session_fixed_in_a_victims_browser_is_replaced_at_login(app: Litestar) -> None:
    async with api_client(app) as attacker, api_client(app) as victim:
        await login(attacker, "alice@pve", "alice-pw")
        fixed = attacker.cookies[SESSION_COOKIE]
        victim.cookies.set(SESSION_COOKIE, fixed, domain="testserver.local")
        assert (await victim.get("/api/auth/me")).json()["user"]["userid"] == "alice@pve"

        await login(victim)  # root@pam logs in while carrying the attacker's cookie
        assert victim.cookies[SESSION_COOKIE] != fixed
        assert (await victim.get("/api/auth/me")).json()["user"]["userid"] == "root@pam"
        # The fixed id never gains the victim's identity: login discarded it, so it now reads nothing at all.
        assert_problem(await attacker.get("/api/auth/me"), 401, "unauthenticated")


async def test_cookie_flags_with_secure_configured_off(app: Litestar, settings: Settings) -> None:
    assert settings.sessions.cookie_secure is False
    async with api_client(app) as http:
        response = await http.post("/api/auth/login", json=GOOD)
        assert response.status_code == 200
        cookie = SimpleCookie()
        cookie.load(response.headers["set-cookie"])
        morsel = cookie[SESSION_COOKIE]
        assert morsel["httponly"]
        assert not morsel["secure"]
        assert morsel["samesite"].lower() == "lax"
        assert morsel["path"] == "/"
        assert not morsel["domain"]  # host-only: never shared with sibling subdomains
        # The CSRF token travels in the body, never in a cookie a script could read.
        assert [name for name in cookie] == [SESSION_COOKIE]
        assert response.json()["csrf_token"] not in response.headers["set-cookie"]
