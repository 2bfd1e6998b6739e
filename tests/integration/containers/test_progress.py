"""Progress: events and log lines in one id sequence, the SSE stream (retry hint, replay, live, Last-Event-ID,
heartbeat, `done`, 204 after the end) over a real socket, and the log buffer as JSON."""

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from litestar.response import ServerSentEventMessage
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_api.sse import ProgressStream
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.events.logbuffer import MAX_LINE_CHARS, LogBuffer
from infrahaus_domain.events.service import EventService
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.ports import Ports
from infrahaus_domain.services import ProcessResources
from infrahaus_domain.settings import Settings
from tests.fixtures.api import UserClient, assert_problem
from tests.integration.containers.conftest import create_container

# An event another producer published late (the fields of EventRead; `seq` and `container_id` filled in per test).
LATE_EVENT: dict[str, Any] = {
    "id": 0,
    "operation_id": None,
    "type": "cancelled",
    "message": "late",
    "metadata": {},
    "container": None,
    "operation": None,
    "created_at": "2026-01-01T00:00:00Z",
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A short heartbeat so a test can see it (and the stream's idle poll) without waiting 15 s.
    return settings.replace(http={"sse_heartbeat_seconds": 0.5})


@dataclass
class Sse:
    """What a client read: every item as (SSE id, `type` from its data, data), the `retry:` hint, comment lines."""

    events: list[tuple[int | None, str, dict[str, Any]]] = field(default_factory=list)
    comments: int = 0
    retry: int | None = None
    named: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [i for i, kind, _ in self.events if i is not None and kind != "done"]

    @property
    def types(self) -> list[str]:
        return [kind for _, kind, _ in self.events]

    @property
    def done(self) -> dict[str, Any] | None:
        return next((d for _, kind, d in self.events if kind == "done"), None)


async def read_sse(
    url: str,
    token: str,
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout: float = 10,
    into: Sse | None = None,
) -> Sse:
    """Read the stream until `done` (or until `stop_after` id-carrying items, then disconnect)."""
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
                if "retry" in current:
                    result.retry = int(current.pop("retry"))
                if "event" in current:
                    result.named.append(current["event"])
                if "data" in current:
                    data = json.loads(current["data"])
                    ident = int(current["id"]) if "id" in current else None
                    result.events.append((ident, data["type"], data))
                    if data["type"] == "done":
                        break
                    if stop_after is not None and len(result.ids) >= stop_after:
                        break
                current = {}
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
    assert len(full.ids) == 17  # `queued`, 5 steps, 10 lines, `created`
    assert full.ids == list(range(1, 18))
    assert full.done == {"type": "done", "operation_id": finished["operation"]["id"], "status": "succeeded"}
    assert full.types.count("log") == 10
    assert full.types[0] == "queued"
    assert full.retry == 2000
    # Nothing is a named event: a browser's `onmessage` receives every item.
    assert full.named == []

    first = await read_sse(url, user_client.token, stop_after=cut) if cut else Sse()
    resumed = await read_sse(url, user_client.token, last_event_id=first.ids[-1] if first.ids else None)
    assert first.ids + resumed.ids == full.ids
    assert resumed.done is not None


async def test_done_repeats_the_last_id_and_a_reconnect_after_it_is_told_to_stop(
    server_url: str, user_client: UserClient, finished: dict[str, Any]
) -> None:
    url = f"{server_url}/api/containers/{finished['container']['id']}/progress"
    full = await read_sse(url, user_client.token)
    last_id, _, _ = full.events[-1]
    assert last_id == full.ids[-1]
    # What a browser does when the server ends the stream after `done`: reconnect with the last id. 204 makes
    # EventSource stop for good instead of replaying `done` every few seconds.
    headers = {"Authorization": f"Bearer {user_client.token}", "Last-Event-ID": str(last_id)}
    async with httpx.AsyncClient() as http:
        again = await http.get(url, headers=headers)
        assert again.status_code == 204
        assert again.content == b""
        # One id earlier still has something to send.
        earlier = await http.get(url, headers={**headers, "Last-Event-ID": str(last_id - 1)})
        assert earlier.status_code == 200


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
    assert second.done == {"type": "done", "operation_id": str(operation_id), "status": "succeeded"}

    everything = await read_sse(url, user_client.token)
    assert first.ids + second.ids == everything.ids
    assert len(everything.ids) == 1 + 6 * 4 + 1


async def test_idle_stream_sends_heartbeats_and_ends_when_the_operation_is_cancelled(
    server_url: str,
    user_client: UserClient,
    registered_node: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
    logbuffer: LogBuffer,
) -> None:
    created = await create_container(user_client, vmid=720)
    url = f"{server_url}/api/containers/{created['container']['id']}/progress"

    stream = Sse()

    async def cancel_after_two_heartbeats() -> None:
        # Cancel once the idle stream has sent two heartbeats, however long a loaded machine takes to get there
        # (`read_sse` fails the test after its own timeout if they never come).
        while stream.comments < 2:
            await asyncio.sleep(0.05)
        response = await user_client.http.delete(f"/api/containers/{created['container']['id']}")
        assert response.status_code == 202

    canceller = asyncio.create_task(cancel_after_two_heartbeats())
    try:
        await read_sse(url, user_client.token, into=stream)
    except BaseException:
        canceller.cancel()
        raise
    await canceller
    assert stream.comments >= 2
    assert stream.done == {"type": "done", "operation_id": created["operation"]["id"], "status": "cancelled"}
    # The operation's end is announced once its transaction committed: after every event of that transaction,
    # the delete's own `queued` among them.
    assert stream.types == ["queued", "cancelled", "queued", "done"]


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


@pytest.mark.parametrize("value", ["abc", "12abc", "-5", "1e3", "1" * 19, "9" * 5000, "1 2", "0x10"])
async def test_a_malformed_or_oversized_last_event_id_is_a_400(
    user_client: UserClient, registered_node: dict[str, Any], value: str
) -> None:
    created = await create_container(user_client, vmid=731)
    response = await user_client.http.get(
        f"/api/containers/{created['container']['id']}/progress", headers={"Last-Event-ID": value}
    )
    assert_problem(response, 400, "invalid_header")


async def test_a_long_line_is_cut_before_it_reaches_the_buffer(logbuffer: LogBuffer) -> None:
    container_id = uuid4()
    stored = await logbuffer.append(container_id, None, step="scripts", line="x" * (MAX_LINE_CHARS * 10))
    assert stored.line.startswith("x" * MAX_LINE_CHARS)
    assert stored.line.endswith(f"[... {MAX_LINE_CHARS * 9} more characters cut]")
    assert [line.line for line in await logbuffer.lines(container_id)] == [stored.line]


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
    assert stream.ids == [1, 2, early, line.id, line.id + 1]
    assert stream.types == ["queued", "step", "cancelled", "log", "created", "done"]


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
    resources = ProcessResources(
        settings=settings, sessionmaker=db, ports=ports, box=SecretBox(settings.encryption.keys), logbuffer=logbuffer
    )
    stream = ProgressStream(container_id, last_event_id=0, resources=resources, heartbeat=30, gap_wait=5)
    received: list[ServerSentEventMessage] = []

    async def consume() -> None:
        async for message in stream:
            if message.data is None:
                continue  # the retry hint, keepalives
            received.append(message)
            if json.loads(str(message.data))["type"] == "done":
                return

    consumer = asyncio.create_task(consume())
    assert settings.redis.url is not None
    redis = Redis.from_url(settings.redis.url)
    channel = f"{settings.redis.prefix}events:container:{container_id}"
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
    assert [m.id for m in received] == [1, early, line.id, line.id + 1, line.id + 1]
    assert [json.loads(str(m.data))["type"] for m in received] == ["queued", "cancelled", "log", "created", "done"]
