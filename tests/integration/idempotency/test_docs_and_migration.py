"""The header is documented on every creating POST; the shutdown body is optional; 0005 migrates old keys."""

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from infrahaus_domain import migrations
from infrahaus_domain.db import create_engine

SCHEMA = json.loads((Path(__file__).parents[3] / "openapi" / "openapi.json").read_text())

CREATING_POSTS = {
    "createApiToken",
    "createContainer",
    "createNode",
    "createPackageBucket",
    "createTemplate",
    "startContainer",
    "stopContainer",
    "shutdownContainer",
    "restartContainer",
    "retryContainer",
    "refreshContainerServices",
    "syncContainer",
    "createContainerSnapshot",
    "rollbackContainerSnapshot",
    "bulkContainerAction",
    "createWebhook",
}


def test_every_creating_post_documents_the_header_and_nothing_else_does() -> None:
    documented = set()
    for item in SCHEMA["paths"].values():
        for method, operation in item.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
            if "Idempotency-Key" in names:
                assert method == "post"
                documented.add(operation["operationId"])
    assert documented == CREATING_POSTS


def test_shutdown_body_is_optional_and_token_replays_are_documented() -> None:
    shutdown = SCHEMA["paths"]["/api/containers/{container_id}/shutdown"]["post"]
    assert shutdown["requestBody"]["required"] is False
    tokens = SCHEMA["paths"]["/api/auth/tokens"]["post"]
    assert "secret_shown_once" in tokens["description"]
    assert "secret_shown_once" in tokens["responses"]["409"]["description"]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_0005_gives_old_keys_the_containers_scope_and_downgrades(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    engine = create_engine(
        request.getfixturevalue("fresh_pg_url") if backend == "postgresql" else f"sqlite+aiosqlite:///{tmp_path}/k.db"
    )
    user, key = uuid.uuid4(), uuid.uuid4()
    try:
        await migrations.upgrade(engine, "0004_containers")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, auth_server, userid, display_name, created_at, updated_at) "
                    "VALUES (:id, 'pve', 'old@pve', 'old', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": user if backend == "postgresql" else user.bytes},
            )
            await conn.execute(
                text(
                    "INSERT INTO idempotency_keys (id, user_id, key, request_hash, response_status, created_at, "
                    "updated_at) VALUES (:id, :user, 'old-key', :hash, 202, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": key if backend == "postgresql" else key.bytes,
                    "user": user if backend == "postgresql" else user.bytes,
                    "hash": "0" * 64,
                },
            )
        await migrations.upgrade(engine)
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT scope FROM idempotency_keys"))).scalars().all() == [
                "POST /api/containers"
            ]
            await conn.execute(
                text(
                    "INSERT INTO idempotency_keys (id, user_id, key, scope, request_hash, response_status, "
                    "created_at, updated_at) VALUES (:id, :user, 'node-key', 'POST /api/nodes', :hash, 201, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": uuid.uuid4() if backend == "postgresql" else uuid.uuid4().bytes,
                    "user": user if backend == "postgresql" else user.bytes,
                    "hash": "1" * 64,
                },
            )
        await migrations.downgrade(engine, "0004_containers")
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT key FROM idempotency_keys"))).scalars().all() == ["old-key"]
        await migrations.upgrade(engine)
        assert await migrations.current(engine) == migrations.head_revision()
    finally:
        await engine.dispose()
