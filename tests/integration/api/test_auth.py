"""Login, sessions, tokens: curl-shaped requests against the app, PostgreSQL, Redis and the simulator."""

import asyncio
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from infrahaus_api.app import create_app
from infrahaus_api.auth import SESSION_COOKIE
from infrahaus_domain.errors import SettingsError
from infrahaus_domain.settings import Settings
from infrahaus_pvesim import RunningNode, SimNodeConfig, SimulatorConfig
from tests.fixtures.api import SessionClient, UserClient, api_client, assert_problem, login, running

pytestmark = pytest.mark.usefixtures("sim_node")


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve")],
        users={"root@pam": "demo", "alice@pve": "alice-pw", "tfa@pve": "tfa-pw"},
        tfa_users={"tfa@pve": "123456"},
    )


async def test_login_me_token_bearer_flow(client: httpx.AsyncClient, app: Litestar) -> None:
    response = await client.post(
        "/api/auth/login",
        content=b'{"username": "root", "password": "demo", "realm": "pam"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["userid"] == "root@pam"
    assert body["user"]["auth_server"] == "pve"
    assert body["auth"] == "session"
    csrf = body["csrf_token"]
    assert len(csrf) >= 32
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=7, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=8)

    me = await client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["user"]["id"] == body["user"]["id"]
    assert me.json()["csrf_token"] == csrf

    created = await client.post("/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("ihs_")
    # No expiry asked for: the default lifetime (90 days), never an unbounded token.
    lifetime = datetime.fromisoformat(created.json()["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=89, hours=23) < lifetime <= timedelta(days=90)

    async with api_client(app) as bearer:  # no cookie jar shared: a separate curl
        listed = await bearer.get("/api/auth/tokens", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
        items = listed.json()["items"]
        assert [t["name"] for t in items] == ["ci"]
        assert "token" not in items[0]
        assert listed.json()["next_cursor"] is None
        me_bearer = await bearer.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me_bearer.json()["user"]["id"] == body["user"]["id"]
        assert me_bearer.json()["auth"] == "token"
        assert me_bearer.json()["csrf_token"] is None
        # With the verification cached, a wrong secret under the same lookup id is still refused.
        forged = "_".join(token.split("_", 2)[:2]) + "_" + "A" * 43
        assert_problem(await bearer.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"}), 401)
        # A bearer token cannot create tokens (only a session can); it needs no CSRF header for what it may do.
        refused = await bearer.post(
            "/api/auth/tokens", json={"name": "second"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(refused, 403, "session_required")
        second = await client.post("/api/auth/tokens", json={"name": "second"}, headers={"X-CSRF-Token": csrf})
        assert second.status_code == 201
        second_auth = {"Authorization": f"Bearer {second.json()['token']}"}
        assert (await bearer.get("/api/auth/me", headers=second_auth)).status_code == 200  # now verified and cached
        revoked = await bearer.delete(
            f"/api/auth/tokens/{second.json()['id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert revoked.status_code == 204
        used = await bearer.get("/api/auth/me", headers={"Authorization": f"Bearer {second.json()['token']}"})
        assert_problem(used, 401, "unauthenticated")
        again = await bearer.delete(
            f"/api/auth/tokens/{second.json()['id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(again, 404, "not_found")

    listed_by_cookie = await client.get("/api/auth/tokens")
    assert [t["name"] for t in listed_by_cookie.json()["items"]] == ["ci"]
    assert listed_by_cookie.json()["items"][0]["last_used_at"] is not None


async def test_username_with_realm_and_second_login_is_the_same_user(client: httpx.AsyncClient) -> None:
    first = await client.post("/api/auth/login", json={"username": "alice@pve", "password": "alice-pw"})
    second = await client.post("/api/auth/login", json={"username": "alice", "realm": "pve", "password": "alice-pw"})
    assert first.status_code == second.status_code == 200
    assert first.json()["user"]["id"] == second.json()["user"]["id"]
    assert second.json()["user"]["userid"] == "alice@pve"


async def test_wrong_password_and_unknown_user_get_the_same_generic_401(client: httpx.AsyncClient) -> None:
    wrong = await client.post("/api/auth/login", json={"username": "root@pam", "password": "nope"})
    unknown = await client.post("/api/auth/login", json={"username": "ghost@pam", "password": "nope"})
    # Wrong credentials have their own code: a client tells "try again" apart from "your session is gone".
    body_wrong = assert_problem(wrong, 401, "invalid_credentials")
    body_unknown = assert_problem(unknown, 401, "invalid_credentials")
    assert body_wrong["detail"] == body_unknown["detail"] == "Invalid username or password."
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")


async def test_tfa_account_gets_a_clear_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"username": "tfa@pve", "password": "tfa-pw"})
    assert_problem(response, 401, "tfa_not_supported")
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_unknown_server_is_422_and_a_client_cannot_pick_a_host(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login", json={"username": "root@pam", "password": "demo", "server": "https://evil.example"}
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"] == [
        {"field": "server", "message": "No authentication server has this name.", "code": "not_allowed"}
    ]
    extra = await client.post("/api/auth/login", json={"username": "root@pam", "password": "demo", "host": "x"})
    assert_problem(extra, 422, "validation_failed")
    named = await client.post("/api/auth/login", json={"username": "root@pam", "password": "demo", "server": "pve"})
    assert named.status_code == 200


async def test_unreachable_auth_server_is_503(client: httpx.AsyncClient, sim_node: RunningNode) -> None:
    sim_node.faults.unreachable = True
    response = await client.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
    assert_problem(response, 503, "auth_server_unreachable")


async def test_session_id_rotates_at_login(client: httpx.AsyncClient, app: Litestar) -> None:
    await login(client)
    before = client.cookies[SESSION_COOKIE]
    await login(client)
    after = client.cookies[SESSION_COOKIE]
    assert before != after
    # The pre-login id reads nothing afterwards: neither through the API nor in the store.
    async with api_client(app) as stale:
        stale.cookies.set(SESSION_COOKIE, before, domain="testserver.local")
        assert_problem(await stale.get("/api/auth/me"), 401, "unauthenticated")
    assert await app.state.resources.session_store.get(before) is None
    assert await app.state.resources.session_store.get(after) is not None
    assert (await client.get("/api/auth/me")).status_code == 200


async def test_planted_session_id_is_not_adopted(client: httpx.AsyncClient) -> None:
    client.cookies.set(SESSION_COOKIE, "attacker-chosen-id", domain="testserver.local")
    await login(client)
    assert client.cookies[SESSION_COOKIE] != "attacker-chosen-id"


async def test_anonymous_requests_create_no_session(client: httpx.AsyncClient, app: Litestar) -> None:
    for path in ("/health/live", "/api/auth/me", "/api/schema/openapi.json"):
        response = await client.get(path)
        assert "set-cookie" not in response.headers, path
    failed = await client.post("/api/auth/login", json={"username": "root@pam", "password": "bad"})
    assert "set-cookie" not in failed.headers


async def test_cookie_flags(settings: Settings) -> None:
    secure_app = create_app(settings.replace(sessions={"cookie_secure": True}))
    async with running(secure_app), api_client(secure_app) as http:
        response = await http.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
        assert response.status_code == 200
        header = response.headers["set-cookie"]
        cookie = SimpleCookie()
        cookie.load(header)
        morsel = cookie[SESSION_COOKIE]
        assert morsel["httponly"]
        assert morsel["secure"]
        assert morsel["samesite"].lower() == "lax"
        assert morsel["path"] == "/"
        assert settings.sessions.absolute_seconds - 5 <= int(morsel["max-age"]) <= settings.sessions.absolute_seconds


@pytest.mark.parametrize(("samesite", "secure"), [("strict", False), ("none", True)])
async def test_cookie_samesite_follows_the_setting(settings: Settings, samesite: str, secure: bool) -> None:
    configured = create_app(settings.replace(sessions={"cookie_secure": secure, "cookie_samesite": samesite}))
    async with running(configured), api_client(configured) as http:
        response = await http.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
        assert response.status_code == 200
        cookie = SimpleCookie()
        cookie.load(response.headers["set-cookie"])
        assert cookie[SESSION_COOKIE]["samesite"].lower() == samesite
        assert bool(cookie[SESSION_COOKIE]["secure"]) is secure
        # Sent by hand: the client keeps no Secure cookie over plain HTTP.
        session = f"{SESSION_COOKIE}={cookie[SESSION_COOKIE].value}"
        logout = await http.post(
            "/api/auth/logout", headers={"X-CSRF-Token": response.json()["csrf_token"], "Cookie": session}
        )
        assert f"SameSite={samesite}".lower() in logout.headers["set-cookie"].lower()


def test_samesite_none_without_secure_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="INFRAHAUS_COOKIE_SAMESITE"):
        create_app(settings.replace(sessions={"cookie_secure": False, "cookie_samesite": "none"}))


async def test_logout_deletes_the_session(client: httpx.AsyncClient, app: Litestar) -> None:
    csrf = await login(client)
    session_id = client.cookies[SESSION_COOKIE]
    response = await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert await app.state.resources.session_store.get(session_id) is None
    async with api_client(app) as replay:  # the old cookie replayed by hand
        replay.cookies.set(SESSION_COOKIE, session_id, domain="testserver.local")
        assert_problem(await replay.get("/api/auth/me"), 401, "unauthenticated")


async def test_logout_with_a_bearer_token_is_harmless(user_client: UserClient) -> None:
    assert (await user_client.http.post("/api/auth/logout")).status_code == 204
    assert (await user_client.http.get("/api/auth/me")).status_code == 200


async def test_login_rate_limit_per_username(settings: Settings) -> None:
    limited = create_app(settings.replace(auth={"login_limit_per_user": 3, "login_limit_window_seconds": 120}))
    async with running(limited), api_client(limited) as http:
        for _ in range(3):
            wrong = await http.post("/api/auth/login", json={"username": "root@pam", "password": "bad"})
            assert wrong.status_code == 401
        blocked = await http.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
        assert_problem(blocked, 429, "rate_limited")
        assert 1 <= int(blocked.headers["Retry-After"]) <= 121
        # Another username from the same client is still allowed.
        other = await http.post("/api/auth/login", json={"username": "alice@pve", "password": "alice-pw"})
        assert other.status_code == 200


async def test_login_rate_limit_per_client(settings: Settings) -> None:
    limited = create_app(settings.replace(auth={"login_limit_per_ip": 2}))
    async with running(limited), api_client(limited) as http:
        for name in ("a@pve", "b@pve"):
            assert (await http.post("/api/auth/login", json={"username": name, "password": "x"})).status_code == 401
        blocked = await http.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
        assert_problem(blocked, 429, "rate_limited")
        assert int(blocked.headers["Retry-After"]) >= 1


async def test_token_validation_and_expiry(session_client: SessionClient) -> None:
    http = session_client.http
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    body = assert_problem(await http.post("/api/auth/tokens", json={"name": "old", "expires_at": past}), 422)
    assert body["errors"][0]["field"] == "expires_at"
    assert_problem(await http.post("/api/auth/tokens", json={"name": ""}), 422, "validation_failed")
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    created = await http.post("/api/auth/tokens", json={"name": "short", "expires_at": soon})
    assert created.status_code == 201
    token = created.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/api/auth/me", headers=headers)).status_code == 200
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # wait (bounded) for the expiry instant to pass
        response = await http.get("/api/auth/me", headers=headers)
        if response.status_code == 401 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert_problem(response, 401, "unauthenticated")


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Basic cm9vdDpkZW1v", "Bearer ihs_nope", "Bearer ihs_0123456789abcdef_wrong"]
)
async def test_bad_authorization_headers_are_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/auth/me", headers={"Authorization": header})
    assert_problem(response, 401, "unauthenticated")


async def test_other_users_token_cannot_be_revoked(
    session_client: SessionClient, other_user_client: UserClient
) -> None:
    created = await session_client.http.post("/api/auth/tokens", json={"name": "mine"})
    response = await other_user_client.http.delete(f"/api/auth/tokens/{created.json()['id']}")
    assert_problem(response, 404, "not_found")
    listed = await other_user_client.http.get("/api/auth/tokens")
    assert "mine" not in [t["name"] for t in listed.json()["items"]]
