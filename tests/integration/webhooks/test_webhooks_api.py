"""`/api/webhooks`: registration with the secret shown once (stored encrypted), reads without it, changes, the
outbound policy at registration, owners only, rotation, a test delivery queued, the deliveries log."""

import base64
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.models.webhooks import Webhook, WebhookDelivery
from infrahaus_domain.settings import Settings
from tests.fixtures.api import UserClient, assert_problem

HOOK = "http://127.0.0.1:9/hook"


async def create(user: UserClient, **body: Any) -> dict[str, Any]:
    response = await user.http.post("/api/webhooks", json={"url": HOOK, **body})
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_create_shows_the_secret_once_and_stores_it_encrypted(
    user_client: UserClient, db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    response = await user_client.http.post("/api/webhooks", json={"url": HOOK, "description": "ci"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/api/webhooks/{created['id']}"
    assert response.headers["cache-control"] == "no-store"
    assert created["events"] == ["*"]
    assert created["enabled"] is True
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

    read = await user_client.http.get(f"/api/webhooks/{created['id']}")
    assert read.status_code == 200
    assert "secret" not in read.json()
    listed = await user_client.http.get("/api/webhooks")
    assert [w["id"] for w in listed.json()["items"]] == [created["id"]]
    assert secret not in read.text + listed.text

    async with db() as session:
        row = await session.get(Webhook, uuid.UUID(created["id"]))
    assert row is not None
    assert secret not in row.secret
    assert row.secret.startswith("v1:")
    assert SecretBox(settings.encryption.keys).decrypt(row.secret) == secret


async def test_a_replayed_creation_does_not_show_the_secret_again(user_client: UserClient) -> None:
    headers = {"Idempotency-Key": "hook-1"}
    first = await user_client.http.post("/api/webhooks", json={"url": HOOK}, headers=headers)
    assert first.status_code == 201
    again = await user_client.http.post("/api/webhooks", json={"url": HOOK}, headers=headers)
    problem = assert_problem(again, 409, "secret_shown_once")
    assert first.json()["id"] in problem["detail"]
    assert first.json()["secret"] not in again.text
    assert len((await user_client.http.get("/api/webhooks")).json()["items"]) == 1


async def test_events_are_validated_and_star_means_all(user_client: UserClient) -> None:
    bad = await user_client.http.post(
        "/api/webhooks", json={"url": "ftp://127.0.0.1/x", "events": ["container.exploded"], "description": "a\x00"}
    )
    problem = assert_problem(bad, 422)
    assert {e["field"] for e in problem["errors"]} >= {"url", "events[0]"}
    chosen = await create(user_client, events=["container.ready", "operation.failed", "container.ready"])
    assert chosen["events"] == ["container.ready", "operation.failed"]
    everything = await create(user_client, events=["drift.detected", "*"])
    assert everything["events"] == ["*"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata: refused whatever is allowed
        "http://10.1.2.3/hook",  # not in the test's INFRAHAUS_OUTBOUND_ALLOW (loopback only)
    ],
)
async def test_a_url_the_outbound_policy_refuses_is_422(user_client: UserClient, url: str) -> None:
    response = await user_client.http.post("/api/webhooks", json={"url": url})
    assert_problem(response, 422, "outbound_denied")
    assert (await user_client.http.get("/api/webhooks")).json()["items"] == []
    hook = await create(user_client)
    changed = await user_client.http.patch(f"/api/webhooks/{hook['id']}", json={"url": url})
    assert_problem(changed, 422, "outbound_denied")
    assert (await user_client.http.get(f"/api/webhooks/{hook['id']}")).json()["url"] == HOOK


async def test_patch_delete_and_other_users(user_client: UserClient, other_user_client: UserClient) -> None:
    hook = await create(user_client)
    path = f"/api/webhooks/{hook['id']}"
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"), ("POST", "/rotate-secret")):
        json_body = {"enabled": False} if method == "PATCH" else None
        response = await other_user_client.http.request(method, path + suffix, json=json_body)
        assert_problem(response, 404, "not_found")
    assert (await other_user_client.http.get(path + "/deliveries")).status_code == 404
    assert (await other_user_client.http.get("/api/webhooks")).json()["items"] == []

    changed = await user_client.http.patch(
        path, json={"events": ["container.deleted"], "description": None, "enabled": False}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["container.deleted"]
    assert changed.json()["enabled"] is False
    assert (await user_client.http.delete(path)).status_code == 204
    assert_problem(await user_client.http.get(path), 404, "not_found")


async def test_rotate_secret_shows_a_new_one_once(
    user_client: UserClient, db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    hook = await create(user_client)
    rotated = await user_client.http.post(f"/api/webhooks/{hook['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["secret"]
    assert secret.startswith("whsec_")
    assert secret != hook["secret"]
    async with db() as session:
        row = await session.get(Webhook, uuid.UUID(hook["id"]))
    assert row is not None
    assert SecretBox(settings.encryption.keys).decrypt(row.secret) == secret


async def test_test_queues_a_delivery_listed_in_the_log(
    user_client: UserClient, db: async_sessionmaker[AsyncSession]
) -> None:
    hook = await create(user_client, events=["container.ready"])
    queued = await user_client.http.post(f"/api/webhooks/{hook['id']}/test")
    assert queued.status_code == 202, queued.text
    delivery = queued.json()
    assert delivery["event_type"] == "webhook.test"
    assert delivery["status"] == "pending"
    assert delivery["attempts"] == 0
    log = await user_client.http.get(f"/api/webhooks/{hook['id']}/deliveries")
    assert [d["id"] for d in log.json()["items"]] == [delivery["id"]]
    delivered = await user_client.http.get(f"/api/webhooks/{hook['id']}/deliveries", params={"status": "delivered"})
    assert delivered.json()["items"] == []
    async with db() as session:
        rows = (await session.scalars(select(WebhookDelivery))).all()
    assert len(rows) == 1
    assert hook["secret"] not in rows[0].payload


async def test_lists_are_paginated(user_client: UserClient) -> None:
    ids = [(await create(user_client))["id"] for _ in range(3)]
    first = (await user_client.http.get("/api/webhooks", params={"limit": 2})).json()
    assert [w["id"] for w in first["items"]] == ids[:2]
    second = (await user_client.http.get("/api/webhooks", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [w["id"] for w in second["items"]] == ids[2:]
    assert second["next_cursor"] is None
