"""CSRF: unsafe cookie-authenticated requests need X-CSRF-Token; bearer requests need none."""

import httpx
import pytest

from infrahaus_api.app import create_app
from infrahaus_domain.settings import Settings
from tests.fixtures.api import SessionClient, UserClient, api_client, assert_problem, login, running

pytestmark = pytest.mark.usefixtures("sim_node")


async def test_cross_site_form_post_with_the_cookie_is_refused(client: httpx.AsyncClient) -> None:
    await login(client)
    response = await client.post(
        "/api/auth/tokens",
        content=b"name=stolen",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
    )
    assert_problem(response, 403, "csrf_failed")
    listed = await client.get("/api/auth/tokens")
    assert listed.json()["items"] == []


@pytest.mark.parametrize("header", [None, "", "wrong-token"])
async def test_unsafe_cookie_requests_need_the_session_csrf_token(
    client: httpx.AsyncClient, header: str | None
) -> None:
    csrf = await login(client)
    headers = {} if header is None else {"X-CSRF-Token": header}
    refused = await client.post("/api/auth/tokens", json={"name": "x"}, headers=headers)
    assert_problem(refused, 403, "csrf_failed")
    assert_problem(await client.post("/api/auth/logout", headers=headers), 403, "csrf_failed")
    accepted = await client.post("/api/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201
    revoke = f"/api/auth/tokens/{accepted.json()['id']}"
    assert_problem(await client.delete(revoke, headers=headers), 403, "csrf_failed")
    assert (await client.delete(revoke, headers={"X-CSRF-Token": csrf})).status_code == 204


async def test_safe_methods_need_no_csrf_token(client: httpx.AsyncClient) -> None:
    await login(client)
    assert (await client.get("/api/auth/me")).status_code == 200
    assert (await client.get("/api/auth/tokens")).status_code == 200


async def test_csrf_token_of_another_session_is_refused(client: httpx.AsyncClient) -> None:
    other_csrf = await login(client)
    await login(client)  # a new session with its own token
    response = await client.post("/api/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": other_csrf})
    assert_problem(response, 403, "csrf_failed")


async def test_bearer_requests_need_no_csrf_header(user_client: UserClient, session_client: SessionClient) -> None:
    created = await session_client.http.post("/api/auth/tokens", json={"name": "automation"})
    assert created.status_code == 201
    bearer = {"Authorization": f"Bearer {created.json()['token']}"}
    deleted = await user_client.http.delete(f"/api/auth/tokens/{created.json()['id']}", headers=bearer)
    assert deleted.status_code == 204


async def test_cors_is_closed_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me", headers={"Origin": "https://ui.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_allows_configured_origins_only(settings: Settings) -> None:
    app = create_app(settings.replace(http={"cors_origins": ("https://ui.example",)}))
    async with running(app), api_client(app) as http:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-csrf-token"}
        allowed = await http.options("/api/auth/tokens", headers={"Origin": "https://ui.example", **preflight})
        assert allowed.status_code in {200, 204}
        assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
        assert allowed.headers["access-control-allow-credentials"] == "true"
        other = await http.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # A page on the allowed origin can read the headers it needs (a script sees only exposed ones).
        simple = await http.get("/api/auth/me", headers={"Origin": "https://ui.example"})
        exposed = {h.strip().lower() for h in simple.headers["access-control-expose-headers"].split(",")}
        assert {"location", "retry-after", "etag", "x-request-id"} <= exposed
