"""Issue 13, item 6 (tokens): only a session creates API tokens, and a token's lifetime is finite unless asked for."""

from datetime import UTC, datetime, timedelta

from litestar import Litestar

from infrahaus_api.app import create_app
from infrahaus_domain.settings import Settings
from tests.fixtures.api import SessionClient, api_client, assert_problem, open_session_client, running


async def test_a_bearer_token_cannot_create_a_token_but_a_session_can(
    app: Litestar, session_client: SessionClient
) -> None:
    created = await session_client.http.post("/api/auth/tokens", json={"name": "ci"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    async with api_client(app, {"Authorization": f"Bearer {token}"}) as bearer:
        assert (await bearer.get("/api/auth/me")).status_code == 200
        refused = assert_problem(await bearer.post("/api/auth/tokens", json={"name": "child"}), 403, "session_required")
        assert "session" in refused["detail"]
        # Refused before the body is read: whatever a bearer request sends, the answer is the same.
        assert_problem(await bearer.post("/api/auth/tokens", json={"name": ""}), 403, "session_required")
        assert_problem(
            await bearer.post("/api/auth/tokens", json={"name": "x"}, headers={"Idempotency-Key": "k"}),
            403,
            "session_required",
        )
        assert [t["name"] for t in (await bearer.get("/api/auth/tokens")).json()["items"]] == ["ci"]
        # Revoking the token leaves nothing it could have made behind.
        revoked = await session_client.http.delete(f"/api/auth/tokens/{created.json()['id']}")
        assert revoked.status_code == 204
        assert_problem(await bearer.get("/api/auth/me"), 401, "unauthenticated")
    assert (await session_client.http.get("/api/auth/tokens")).json()["items"] == []


async def test_a_token_expires_after_the_default_lifetime_unless_null_is_asked_for(
    session_client: SessionClient,
) -> None:
    default = await session_client.http.post("/api/auth/tokens", json={"name": "default"})
    assert default.status_code == 201, default.text
    lifetime = datetime.fromisoformat(default.json()["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=89, hours=23) < lifetime <= timedelta(days=90)

    forever = await session_client.http.post("/api/auth/tokens", json={"name": "forever", "expires_at": None})
    assert forever.status_code == 201, forever.text
    assert forever.json()["expires_at"] is None

    listed = {t["name"]: t["expires_at"] for t in (await session_client.http.get("/api/auth/tokens")).json()["items"]}
    assert listed["forever"] is None
    assert listed["default"] == default.json()["expires_at"]


async def test_the_default_token_lifetime_is_configurable(settings: Settings) -> None:
    week = create_app(settings.replace(auth={"token_lifetime_days": 7}))
    async with running(week):
        session = await open_session_client(week, "alice@pve")
        async with session.http:
            created = await session.http.post("/api/auth/tokens", json={"name": "weekly"})
        assert created.status_code == 201, created.text
        lifetime = datetime.fromisoformat(created.json()["expires_at"]) - datetime.now(UTC)
        assert timedelta(days=6, hours=23) < lifetime <= timedelta(days=7)
