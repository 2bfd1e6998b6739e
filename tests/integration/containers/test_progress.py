"""Progress: events and log lines in one id sequence, the SSE stream (replay, live, Last-Event-ID, heartbeat,
`done`) over a real socket, and the log buffer as JSON."""

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import msgspec
import pytest
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.response import ServerSentEventMessage
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_api.sse import ProgressStream
from infrahaus_domain.events.logbuffer import LogBuffer
from infrahaus_domain.events.service import EventService
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.ports import Ports
from infrahaus_domain.settings import Settings
from tests.fixtures.api import UserClient
from tests.integration.containers.conftest import create_container

# An event another producer published late (the fields of EventRead; `seq` and `container_id` filled in per test).
LATE_EVENT: dict[str, Any] = {
    "id": 0,
    "operation_id": None,
    "type": "cancelled",
    "message": "late",
    "metadata": {},
    "created_at": "2026-01-01T00:00:00Z",
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A short heartbeat so a test can see it (and the stream's idle poll) without waiting 15 s.
    return msgspec.structs.replace(settings, sse_heartbeat_seconds=0.5)


@pytest.fixture
async def server_url(app: Litestar) -> AsyncIterator[str]:
    """The app served by uvicorn on a free loopback port (SSE needs a real streaming transport)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = asyncio.get_running_loop().time() + 10
    while not server.started:
        assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@dataclass
class Sse:
    events: list[tuple[int | None, str, dict[str, Any]]] = field(default_factory=list)
    comments: int = 0

    @property
    def ids(self) -> list[int]:
        return [i for i, _, _ in self.events if i is not None]

    @property
    def done(self) -> dict[str, Any] | None:
        return next((d for _, e, d in self.events if e == "done"), None)


async def read_sse(
    url: str,
    token: str,
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout: float = 10,
    into: Sse | None = None,
) -> Sse:
    """Read the stream until `done` (or until `stop_after` id-carrying events, then disconnect)."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    result = into if into is not None else Sse()
    async with asyncio.timeout(timeout), httpx.AsyncClient() as http, http.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        async for line in r.aiter_lines():
            if line.startswith(":"):
                result.comments += 1
                continue
            if line == "":
                if current:
                    ident = int(current["id"]) if "id" in current else None
                    result.events.append((ident, current.get("event", "message"), json.loads(current["data"])))
                    current = {}
                    if result.events[-1][1] == "done":
                        break
                    if stop_after is not None and len(result.ids) >= stop_after:
                        break
                continue
            name, _, value = line.partition(":")
            current[name] = value.removeprefix(" ")
    return result


async def produce(
    db: async_sessionmaker[AsyncSession], logbuffer: LogBuffer, container_id: UUID, operation_id: UUID, n: int
) -> None:
    """Play the worker: step events and log lines, interleaved, committed one by one."""
    for i in range(n):
        if i % 3 == 0:
            async with db() as session:
                ops = OperationService(session, events=EventService(session, logbuffer=logbuffer))
                await ops.progress(operation_id, step=f"s{i}", progress=i, message=f"step {i}")
                await session.commit()
        else:
            await logbuffer.append(container_id, operation_id, step="scripts", script="10-a", line=f"line {i}")


async def claim(db: async_sessionmaker[AsyncSession], logbuffer: LogBuffer, operation_id: UUID) -> None:
    async with db() as session:
        await OperationService(session, events=EventService(session, logbuffer=logbuffer)).claim(operation_id, "w1")
        await session.commit()


async def succeed(db: async_sessionmaker[AsyncSession], logbuffer: LogBuffer, operation_id: UUID) -> None:
    async with db() as session:
        await OperationService(session, events=EventService(session, logbuffer=logbuffer)).succeed(operation_id, {})
        await session.commit()


@pytest.fixture
async def finished(
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> dict[str, Any]:
    """A container whose creation ran to the end: 15 items produced, then `succeeded` (+ a `created` event)."""
    created = await create_container(user_client, vmid=700)
    container_id, operation_id = UUID(created["container"]["id"]), UUID(created["operation"]["id"])
    await claim(db, logbuffer, operation_id)
    await produce(db, logbuffer, container_id, operation_id, 15)
    await succeed(db, logbuffer, operation_id)
    return created


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=16))
async def test_reconnecting_with_last_event_id_yields_every_event_once_in_order(
    server_url: str, user_client: UserClient, finished: dict[str, Any], cut: int
) -> None:
    url = f"{server_url}/api/containers/{finished['container']['id']}/progress"
    full = await read_sse(url, user_client.token)
    assert len(full.ids) == 16  # 5 steps + 10 lines + `created`
    assert full.ids == sorted(set(full.ids))
    assert full.done == {"operation_id": finished["operation"]["id"], "status": "succeeded"}
    assert [e for _, e, _ in full.events].count("log") == 10

    first = await read_sse(url, user_client.token, stop_after=cut) if cut else Sse()
    resumed = await read_sse(url, user_client.token, last_event_id=first.ids[-1] if first.ids else None)
    assert first.ids + resumed.ids == full.ids
    assert resumed.done is not None


async def test_live_stream_with_a_disconnect_loses_and_repeats_nothing(
    server_url: str,
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    created = await create_container(user_client, vmid=710)
    container_id, operation_id = UUID(created["container"]["id"]), UUID(created["operation"]["id"])
    url = f"{server_url}/api/containers/{container_id}/progress"
    await claim(db, logbuffer, operation_id)

    async def worker() -> None:
        for _ in range(6):
            await produce(db, logbuffer, container_id, operation_id, 4)
            await asyncio.sleep(0.05)
        await succeed(db, logbuffer, operation_id)

    producer = asyncio.create_task(worker())
    first = await read_sse(url, user_client.token, stop_after=7)
    second = await read_sse(url, user_client.token, last_event_id=first.ids[-1])
    await producer
    assert second.done == {"operation_id": str(operation_id), "status": "succeeded"}

    everything = await read_sse(url, user_client.token)
    assert first.ids + second.ids == everything.ids
    assert len(everything.ids) == 6 * 4 + 1


async def test_idle_stream_sends_heartbeats_and_ends_when_the_operation_is_cancelled(
    server_url: str,
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    created = await create_container(user_client, vmid=720)
    url = f"{server_url}/api/containers/{created['container']['id']}/progress"

    async def cancel_later() -> None:
        await asyncio.sleep(1.2)
        response = await user_client.http.delete(f"/api/containers/{created['container']['id']}")
        assert response.status_code == 202

    canceller = asyncio.create_task(cancel_later())
    stream = await read_sse(url, user_client.token)
    await canceller
    assert stream.comments >= 2
    assert stream.done == {"operation_id": created["operation"]["id"], "status": "cancelled"}
    assert [e for _, e, _ in stream.events] == ["cancelled", "done"]


async def test_logs_endpoint_serves_the_buffer_by_script_and_after(
    user_client: UserClient,
    registered_node: dict[str, Any],
    logbuffer: LogBuffer,
) -> None:
    created = await create_container(user_client, vmid=730)
    container_id, operation_id = UUID(created["container"]["id"]), UUID(created["operation"]["id"])
    for i in range(4):
        await logbuffer.append(container_id, operation_id, step="scripts", script="10-a", line=f"a{i}")
        await logbuffer.append(container_id, operation_id, step="scripts", script="20-b", stream="stderr", line=f"b{i}")
    base = f"/api/containers/{container_id}/logs"
    everything = (await user_client.http.get(base)).json()
    assert [i["line"] for i in everything["items"]] == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"]
    assert everything["last_id"] == everything["items"][-1]["id"]
    only_b = (await user_client.http.get(base, params={"script": "20-b"})).json()
    assert [(i["line"], i["stream"]) for i in only_b["items"]] == [(f"b{i}", "stderr") for i in range(4)]
    after = (await user_client.http.get(base, params={"after": everything["items"][5]["id"]})).json()
    assert [i["line"] for i in after["items"]] == ["a3", "b3"]


async def test_the_buffer_keeps_only_the_newest_lines(logbuffer: LogBuffer) -> None:
    small = LogBuffer(logbuffer.store, logbuffer.bus, max_lines=5)
    container_id = UUID("01900000-0000-7000-8000-000000000001")
    with contextlib.suppress(Exception):
        await small.clear(container_id)
    for i in range(12):
        await small.append(container_id, None, step="scripts", line=f"l{i}")
    lines = await small.lines(container_id)
    assert [line.line for line in lines] == [f"l{i}" for i in range(7, 12)]
    assert [line.id for line in lines] == list(range(8, 13))
    await small.clear(container_id)


async def test_live_items_published_out_of_order_by_two_producers_arrive_in_order(
    server_url: str,
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    created = await create_container(user_client, vmid=740)
    container_id, operation_id = UUID(created["container"]["id"]), UUID(created["operation"]["id"])
    await claim(db, logbuffer, operation_id)
    await produce(db, logbuffer, container_id, operation_id, 1)
    stream = Sse()
    reader = asyncio.create_task(
        read_sse(f"{server_url}/api/containers/{container_id}/progress", user_client.token, into=stream)
    )
    deadline = asyncio.get_running_loop().time() + 5
    while len(stream.ids) < 1:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)

    # The API allocates an id for an event, the worker appends a line meanwhile and publishes first.
    early = await logbuffer.next_seq(container_id)
    line = await logbuffer.append(container_id, operation_id, step="scripts", line="worker was faster")
    await logbuffer.append_event(container_id, early, {**LATE_EVENT, "seq": early, "container_id": str(container_id)})
    await succeed(db, logbuffer, operation_id)
    await reader
    assert stream.ids == [1, early, line.id, line.id + 1]
    assert [e for _, e, _ in stream.events] == ["step", "cancelled", "log", "created", "done"]


async def test_replay_waits_for_an_id_still_being_published(
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
    ports: Ports,
    settings: Settings,
) -> None:
    created = await create_container(user_client, vmid=750)
    container_id, operation_id = UUID(created["container"]["id"]), UUID(created["operation"]["id"])
    await claim(db, logbuffer, operation_id)
    # Another producer holds id `early` but has not published it; the next line is already in the buffer.
    early = await logbuffer.next_seq(container_id)
    line = await logbuffer.append(container_id, operation_id, step="scripts", line="ahead")
    stream = ProgressStream(
        container_id, last_event_id=0, sessionmaker=db, logbuffer=logbuffer, bus=ports.events, heartbeat=30, gap_wait=5
    )
    received: list[ServerSentEventMessage] = []

    async def consume() -> None:
        async for message in stream:
            received.append(message)
            if message.event == "done":
                return

    consumer = asyncio.create_task(consume())
    assert settings.redis_url is not None
    redis = Redis.from_url(settings.redis_url)
    channel = f"{settings.redis_prefix}events:container:{container_id}"
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while not (await redis.pubsub_numsub(channel))[0][1]:
            assert asyncio.get_running_loop().time() < deadline, "the stream never subscribed"
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
    await logbuffer.append_event(container_id, early, {**LATE_EVENT, "seq": early, "container_id": str(container_id)})
    await succeed(db, logbuffer, operation_id)
    await asyncio.wait_for(consumer, 10)
    assert [m.id for m in received] == [early, line.id, line.id + 1, None]
    assert [m.event for m in received] == ["cancelled", "log", "created", "done"]
