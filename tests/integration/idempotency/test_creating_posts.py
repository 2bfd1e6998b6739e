"""`Idempotency-Key` on the creating POSTs of nodes, templates, package buckets and API tokens.

For each: the same key and body replays the first answer and creates nothing more; another body (or another
endpoint) with the key is a 422 `idempotency_key_reused`; without a key nothing changes; concurrent requests with one
key create one thing. Token secrets are shown once: a replay is a 409 `secret_shown_once` that names the token.
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.models.idempotency import IdempotencyKey
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.models.templates import PackageBucket, Template
from infrahaus_domain.models.users import ApiToken
from infrahaus_pvesim import RunningNode, SimulatorConfig
from tests.fixtures.api import SessionClient, UserClient, assert_no_secrets, assert_problem
from tests.fixtures.nodes import node_body


@dataclass(frozen=True)
class Endpoint:
    path: str
    model: type[Any]
    location_prefix: str

    def body(self, ctx: "Ctx", name: str) -> dict[str, Any]:
        if self.model is Node:
            return node_body(ctx.node, ctx.config, name=name)
        return {"name": name, "description": "made by the idempotency tests"}


@dataclass(frozen=True)
class Ctx:
    node: RunningNode
    config: SimulatorConfig


ENDPOINTS = {
    "nodes": Endpoint("/api/nodes", Node, "/api/nodes/"),
    "templates": Endpoint("/api/templates", Template, "/api/templates/"),
    "package-buckets": Endpoint("/api/package-buckets", PackageBucket, "/api/package-buckets/"),
}


async def count(db: async_sessionmaker[AsyncSession], model: type[Any]) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def ctx(sim_node: RunningNode, simulator_config: SimulatorConfig) -> Ctx:
    return Ctx(sim_node, simulator_config)


@pytest.mark.parametrize("name", list(ENDPOINTS))
async def test_same_key_replays_another_body_is_refused_no_key_is_unchanged(
    name: str, user_client: UserClient, db: async_sessionmaker[AsyncSession], ctx: Ctx
) -> None:
    endpoint = ENDPOINTS[name]
    http = user_client.http
    headers = {"Idempotency-Key": f"{name}-first"}

    first = await http.post(endpoint.path, json=endpoint.body(ctx, "alpha"), headers=headers)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == endpoint.location_prefix + first.json()["id"]
    again = await http.post(endpoint.path, json=endpoint.body(ctx, "alpha"), headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"].startswith("application/json")
    assert await count(db, endpoint.model) == 1

    other = await http.post(endpoint.path, json=endpoint.body(ctx, "beta"), headers=headers)
    problem = assert_problem(other, 422, "idempotency_key_reused")
    assert problem["errors"] == [
        {"field": "Idempotency-Key", "message": "Already used with a different request body.", "code": "invalid"}
    ]
    assert await count(db, endpoint.model) == 1

    # Without a key every request creates (and a duplicate name is refused as before).
    plain = await http.post(endpoint.path, json=endpoint.body(ctx, "gamma"))
    assert plain.status_code == 201, plain.text
    assert plain.json()["id"] != first.json()["id"]
    duplicate = await http.post(endpoint.path, json=endpoint.body(ctx, "gamma"))
    assert duplicate.status_code == 409, duplicate.text
    assert await count(db, endpoint.model) == 2

    # A refused request does not keep its key: after the conflict the key can serve a good request.
    key = {"Idempotency-Key": f"{name}-after-error"}
    assert (await http.post(endpoint.path, json=endpoint.body(ctx, "gamma"), headers=key)).status_code == 409
    retried = await http.post(endpoint.path, json=endpoint.body(ctx, "delta"), headers=key)
    assert retried.status_code == 201, retried.text
    assert await count(db, endpoint.model) == 3


@pytest.mark.parametrize("name", list(ENDPOINTS))
async def test_concurrent_requests_with_one_key_create_once(
    name: str, user_client: UserClient, db: async_sessionmaker[AsyncSession], ctx: Ctx
) -> None:
    endpoint = ENDPOINTS[name]
    headers = {"Idempotency-Key": f"{name}-race"}
    responses = await asyncio.gather(
        *(user_client.http.post(endpoint.path, json=endpoint.body(ctx, "race"), headers=headers) for _ in range(4))
    )
    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    assert len({r.text for r in responses}) <= 2  # PostgreSQL's jsonb may reorder the replayed body's keys
    assert all(r.json() == responses[0].json() for r in responses)
    assert await count(db, endpoint.model) == 1
    assert await count(db, IdempotencyKey) == 1


@pytest.mark.usefixtures("sim_node")
async def test_a_key_belongs_to_one_endpoint_and_one_user(
    user_client: UserClient, other_user_client: UserClient, db: async_sessionmaker[AsyncSession]
) -> None:
    headers = {"Idempotency-Key": "shared"}
    body = {"name": "same-name"}
    bucket = await user_client.http.post("/api/package-buckets", json=body, headers=headers)
    assert bucket.status_code == 201
    template = await user_client.http.post("/api/templates", json=body, headers=headers)
    problem = assert_problem(template, 422, "idempotency_key_reused")
    assert problem["errors"][0]["message"] == "Already used on another endpoint."
    assert await count(db, Template) == 0

    # Another user's key of the same name is theirs alone.
    theirs = await other_user_client.http.post("/api/templates", json=body, headers=headers)
    assert theirs.status_code == 201, theirs.text
    assert await count(db, Template) == 1


@pytest.mark.usefixtures("sim_node")
async def test_a_key_older_than_24_hours_is_free_again(
    user_client: UserClient, db: async_sessionmaker[AsyncSession]
) -> None:
    headers = {"Idempotency-Key": "daily"}
    first = await user_client.http.post("/api/package-buckets", json={"name": "monday"}, headers=headers)
    assert first.status_code == 201
    async with db() as session:
        await session.execute(update(IdempotencyKey).values(created_at=datetime.now(UTC) - timedelta(hours=25)))
        await session.commit()
    later = await user_client.http.post("/api/package-buckets", json={"name": "tuesday"}, headers=headers)
    assert later.status_code == 201, later.text
    assert later.json()["id"] != first.json()["id"]
    assert await count(db, PackageBucket) == 2
    replay = await user_client.http.post("/api/package-buckets", json={"name": "tuesday"}, headers=headers)
    assert replay.json() == later.json()
    assert await count(db, IdempotencyKey) == 1


@pytest.mark.usefixtures("sim_node")
@pytest.mark.parametrize("key", ["", "k" * 256, "tab\tin-key", "nul\x00", "é"])
async def test_keys_must_be_1_to_255_printable_ascii_characters(
    key: str, user_client: UserClient, db: async_sessionmaker[AsyncSession]
) -> None:
    response = await user_client.http.post(
        "/api/package-buckets", json={"name": "b"}, headers={b"Idempotency-Key": key.encode()}
    )
    problem = assert_problem(response, 422, "validation_failed")
    # Litestar checks the documented maxLength itself and names the handler's parameter, the rest is the domain's.
    assert [e["field"] for e in problem["errors"]] == ["idempotency_key" if len(key) > 255 else "Idempotency-Key"]
    assert await count(db, PackageBucket) == 0
    assert await count(db, IdempotencyKey) == 0


@pytest.mark.usefixtures("sim_node")
async def test_token_secret_is_shown_once_even_to_a_retry(
    session_client: SessionClient, db: async_sessionmaker[AsyncSession]
) -> None:
    user_client = session_client
    tokens_before = await count(db, ApiToken)
    headers = {"Idempotency-Key": "token-1"}
    body = {"name": "ci"}
    first = await user_client.http.post("/api/auth/tokens", json=body, headers=headers)
    assert first.status_code == 201, first.text
    created = first.json()
    secret = created["token"]

    again = await user_client.http.post("/api/auth/tokens", json=body, headers=headers)
    problem = assert_problem(again, 409, "secret_shown_once")
    assert created["id"] in problem["detail"]
    assert_no_secrets([secret], again.text)
    async with db() as session:
        stored = (await session.scalars(select(IdempotencyKey))).one()
    assert stored.response_status == 409
    assert_no_secrets([secret], repr(stored.response_body), stored.request_hash)
    assert await count(db, ApiToken) == tokens_before + 1

    assert_problem(
        await user_client.http.post("/api/auth/tokens", json={"name": "other"}, headers=headers),
        422,
        "idempotency_key_reused",
    )
    plain = await user_client.http.post("/api/auth/tokens", json=body)
    assert plain.status_code == 201
    assert plain.json()["token"] != secret
    assert await count(db, ApiToken) == tokens_before + 2

    # The first token works; the replay did not reveal or replace it.
    me = await user_client.http.get("/api/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200


@pytest.mark.usefixtures("sim_node")
async def test_concurrent_token_requests_with_one_key_issue_one_token(
    session_client: SessionClient, db: async_sessionmaker[AsyncSession]
) -> None:
    user_client = session_client
    tokens_before = await count(db, ApiToken)
    headers = {"Idempotency-Key": "token-race"}
    responses = await asyncio.gather(
        *(user_client.http.post("/api/auth/tokens", json={"name": "race"}, headers=headers) for _ in range(4))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409], [r.text for r in responses]
    secret = next(r.json()["token"] for r in responses if r.status_code == 201)
    assert_no_secrets([secret], *(r.text for r in responses if r.status_code == 409))
    assert await count(db, ApiToken) == tokens_before + 1
