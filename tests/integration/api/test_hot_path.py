"""The authenticated read's hot path: what it costs in round trips, that nothing read-only writes, and that the
node list kept in memory follows every change.

Round trips are counted at the drivers: every PostgreSQL command psycopg sends (statements, and BEGIN / COMMIT /
ROLLBACK) and every Redis command redis-py sends, while one request is answered.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_api.db import ReadOnlyRequestWrote, is_read_only, read_only_sessionmaker
from infrahaus_api.resources import AppResources
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.db import create_engine
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.models.templates import PackageBucket
from infrahaus_domain.nodes.list_cache import NODE_LIST_SECONDS, NODE_LIST_TOPIC, node_list_watch, published
from infrahaus_domain.ports import build_ports
from infrahaus_domain.settings import Settings
from tests.fixtures.api import UserClient, login


class RoundTrips:
    def __init__(self) -> None:
        self.postgres: list[str] = []
        self.redis: list[str] = []


@contextlib.contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    trips = RoundTrips()
    execute = psycopg.AsyncCursor.execute
    exec_command = psycopg.AsyncConnection._exec_command  # BEGIN, COMMIT, ROLLBACK
    redis_command = Redis.execute_command

    async def counted_execute(self: psycopg.AsyncCursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        trips.postgres.append(str(query)[:40])
        return await execute(self, query, *args, **kwargs)

    def counted_command(self: psycopg.AsyncConnection[Any], command: Any, *args: Any, **kwargs: Any) -> Any:
        trips.postgres.append(bytes(command).decode() if isinstance(command, bytes) else str(command))
        return exec_command(self, command, *args, **kwargs)

    async def counted_redis(self: Any, *args: Any, **kwargs: Any) -> Any:
        trips.redis.append(str(args[0]))
        return await redis_command(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.AsyncCursor, "execute", counted_execute)
        patch.setattr(psycopg.AsyncConnection, "_exec_command", counted_command)
        patch.setattr(Redis, "execute_command", counted_redis)
        yield trips


async def caches_listening(app: Litestar) -> None:
    """The process's caches keep nothing until their invalidation subscription is up (it starts with the first
    request that uses one), so a warm-up read counts only after it is."""
    await app.state.resources.ports.invalidation.wait_connected(10)


async def test_an_unchanged_node_list_costs_no_round_trip_and_a_changed_one_a_single_statement(
    app: Litestar, user_client: UserClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources: AppResources = app.state.resources
    node_id = await add_node(resources.sessionmaker, user_client.user_id, "pve1", resources.box)
    assert (await user_client.http.get("/api/nodes")).status_code == 200
    await caches_listening(app)
    first = await user_client.http.get("/api/nodes")  # verifies the token, reads and keeps the list
    assert first.status_code == 200, first.text
    with counting(monkeypatch) as trips:
        response = await user_client.http.get("/api/nodes")
    assert response.status_code == 200, response.text
    assert response.content == first.content
    assert trips.postgres == []  # no token lookup, no list query, no BEGIN, ping or COMMIT
    assert trips.redis == []

    # A commit in any session of the process drops the list at once: the very next read is one statement.
    async with resources.sessionmaker() as session:
        session.add(Container(user_id=user_client.user_id, node_id=node_id, vmid=101, hostname="web", request={}))
        await session.commit()
    with counting(monkeypatch) as trips:
        response = await user_client.http.get("/api/nodes")
    assert [n["container_count"] for n in response.json()["items"]] == [1]
    assert len(trips.postgres) == 1, trips.postgres
    assert trips.postgres[0].lstrip().upper().startswith("SELECT")
    assert trips.redis == []

    # A change through the API (a transaction of its own) too, and each limit is its own page.
    renamed = await user_client.http.patch(f"/api/nodes/{node_id}", json={"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    assert [n["name"] for n in (await user_client.http.get("/api/nodes")).json()["items"]] == ["renamed"]
    assert (await user_client.http.get("/api/nodes?limit=1")).json()["items"][0]["name"] == "renamed"


async def test_a_node_list_change_in_another_process_is_seen_here_once_its_message_arrives(
    app: Litestar, settings: Settings, user_client: UserClient
) -> None:
    """Another process (its own database engine and Redis connections) changes the rows and publishes: this
    process served its kept list until then, and drops it when the message arrives, long before the bound."""
    resources: AppResources = app.state.resources
    node_id = await add_node(resources.sessionmaker, user_client.user_id, "pve1", resources.box)
    await user_client.http.get("/api/nodes")
    await caches_listening(app)

    async def counts() -> list[int]:
        return [n["container_count"] for n in (await user_client.http.get("/api/nodes")).json()["items"]]

    assert await counts() == [0]
    other = build_ports(settings.redis.url, settings.redis.prefix)
    engine = create_engine(settings.database.url)
    try:
        # Written by a session that publishes nothing itself: only the message below can make it visible here.
        async with async_sessionmaker(engine)() as session:
            session.add(Container(user_id=user_client.user_id, node_id=node_id, vmid=102, hostname="db", request={}))
            await session.commit()
        assert await counts() == [0]  # still the kept list
        await other.invalidation.publish(NODE_LIST_TOPIC, str(user_client.user_id))
        started = time.monotonic()
        while await counts() != [1]:
            assert time.monotonic() - started < NODE_LIST_SECONDS / 2, "the invalidation never arrived"
            await asyncio.sleep(0.01)
    finally:
        await other.close()
        await engine.dispose()


async def test_a_watched_session_publishes_the_users_whose_node_list_its_commit_changed(
    settings: Settings, user_client: UserClient
) -> None:
    """What another process receives when a worker's or API's session commits: the users whose list changed,
    nothing for commits that do not change a list."""
    here, there = (build_ports(settings.redis.url, settings.redis.prefix) for _ in range(2))
    engine = create_engine(settings.database.url)
    received: list[str | None] = []
    try:
        there.invalidation.listen(NODE_LIST_TOPIC, received.append)
        await there.invalidation.wait_connected(10)  # type: ignore[attr-defined]
        sessions = async_sessionmaker(engine, expire_on_commit=False, info=node_list_watch(here.invalidation))
        node_id = await add_node(sessions, user_client.user_id, "pve1", SecretBox(settings.encryption.keys))
        async with sessions() as session:
            container = Container(user_id=user_client.user_id, node_id=node_id, vmid=103, hostname="a", request={})
            session.add(container)
            await session.commit()
            container.lifecycle = "ready"  # not shown by the list: nothing to publish
            await session.commit()
            await session.delete(container)
            await session.commit()
            await published(session)
        expected = [str(user_client.user_id)] * 3  # the node, the new container, the deleted one
        deadline = time.monotonic() + 5
        while received != expected:
            assert time.monotonic() < deadline, received
            await asyncio.sleep(0.01)
    finally:
        await here.close()
        await there.close()
        await engine.dispose()


async def add_node(
    sessions: async_sessionmaker[AsyncSession], user_id: uuid.UUID, name: str, box: SecretBox
) -> uuid.UUID:
    async with sessions() as session:
        node = Node(
            user_id=user_id,
            name=name,
            host="10.0.0.1",
            pve_node=name,
            token_id="root@pam!infrahaus",
            token_secret=box.encrypt("not-a-real-secret"),
            tls_fingerprint="AB" * 32,
            is_default=True,
        )
        session.add(node)
        await session.commit()
        return node.id


@pytest.mark.usefixtures("sim_node")
async def test_a_session_read_needs_no_store_round_trip(
    app: Litestar, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await login(client)
    assert (await client.get("/api/nodes")).status_code == 200
    await caches_listening(app)
    assert (await client.get("/api/nodes")).status_code == 200  # loads the session into the process's cache
    with counting(monkeypatch) as trips:
        response = await client.get("/api/nodes")
    assert response.status_code == 200, response.text
    assert trips.redis == []
    assert trips.postgres == []  # the node list is kept too


async def test_a_write_still_runs_in_one_transaction(
    app: Litestar, user_client: UserClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await user_client.http.get("/api/nodes")).status_code == 200
    await caches_listening(app)
    assert (await user_client.http.get("/api/nodes")).status_code == 200  # the token's verification is cached
    with counting(monkeypatch) as trips:
        response = await user_client.http.post("/api/package-buckets", json={"name": "tools"})
    assert response.status_code == 201, response.text
    # (a statement is recorded before the BEGIN psycopg sends ahead of it)
    assert sum(1 for c in trips.postgres if c.startswith("BEGIN")) == 1, trips.postgres
    assert trips.postgres[-1] == "COMMIT", trips.postgres


async def test_only_the_credential_reveal_and_drift_are_reads_with_a_transaction(app: Litestar) -> None:
    # The reveal records a `credentials_viewed` event; drift found for the first time queues webhook deliveries.
    handlers = {
        (route.path, handler): handler
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if "GET" in getattr(handler, "http_methods", ())
    }
    with_transaction = {path for (path, handler) in handlers if not is_read_only(_get_scope(handler))}
    assert with_transaction == {
        "/api/containers/{container_id:uuid}/services/{name:str}/credentials",
        "/api/containers/{container_id:uuid}/drift",
    }


async def test_a_read_only_session_refuses_to_write(app: Litestar) -> None:
    engine = app.state.resources.engine
    session = read_only_sessionmaker(engine)()
    async with session:
        session.add(PackageBucket(owner_id=uuid.uuid4(), name="never"))
        with pytest.raises(ReadOnlyRequestWrote):
            await session.flush()
    async with read_only_sessionmaker(engine)() as session:
        with pytest.raises(ReadOnlyRequestWrote):
            await session.execute(delete(PackageBucket))


def _get_scope(handler: Any) -> Any:
    return {"method": "GET", "route_handler": handler}
