"""The global event stream (`GET /api/events/stream`) as a dashboard uses it: one stream, opened before anything
happens, carries a creation and two lifecycle operations run by the worker, and every state change arrives without
anyone polling (the server's own heartbeat is longer than the whole test). Resuming with `Last-Event-ID`, replaying
with `after`, and the filters give exactly the matching part of the same sequence."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import pytest

from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import Event
from infrahaus_domain.settings import Settings
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import delete_container, start_container, stop_container
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import request_action, request_container

Item = tuple[int, dict[str, Any]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Longer than the test: every event must come from a wake-up, never from the stream's own periodic look.
    return settings.replace(http={"sse_heartbeat_seconds": 60})


@dataclass
class StreamReader:
    """Reads `GET /api/events/stream` in the background, item by item (SSE id, JSON data)."""

    url: str
    token: str
    params: list[tuple[str, str | int | float | bool | None]] = field(default_factory=list)
    last_event_id: int | None = None
    items: list[Item] = field(default_factory=list)
    retry: int | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=120.0)) as http,
            http.stream("GET", f"{self.url}/api/events/stream", params=self.params, headers=headers) as response,
        ):
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            self.opened.set()
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                assert "event" not in fields, fields  # unnamed: a browser's onmessage gets every item
                if "retry" in fields:
                    self.retry = int(fields["retry"])
                if "data" in fields:
                    self.items.append((int(fields["id"]), json.loads(fields["data"])))
                    self.changed.set()
                fields = {}

    async def wait_for(self, done: Callable[[list[Item]], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not done(self.items):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def reading(reader: StreamReader) -> AsyncIterator[StreamReader]:
    task = asyncio.create_task(reader.run())
    try:
        async with asyncio.timeout(10):
            await asyncio.wait([task, asyncio.ensure_future(reader.opened.wait())], return_when="FIRST_COMPLETED")
        if task.done():
            task.result()
        yield reader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def states(items: list[Item], container_id: str) -> list[tuple[str, str | None]]:
    """The container's (lifecycle, status) as the stream told it, each change once."""
    seen: list[tuple[str, str | None]] = []
    for _, event in items:
        if event["container_id"] != container_id:
            continue
        state = (event["container"]["lifecycle"], event["container"]["status"])
        if not seen or seen[-1] != state:
            seen.append(state)
    return seen


def operation_statuses(items: list[Item], operation_id: str) -> list[str]:
    seen: list[str] = []
    for _, event in items:
        operation = event["operation"]
        if operation is not None and operation["id"] == operation_id and (not seen or seen[-1] != operation["status"]):
            seen.append(operation["status"])
    return seen


async def test_one_stream_carries_a_creation_and_two_lifecycle_operations(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    server_url: str,
) -> None:
    async with reading(StreamReader(server_url, user_client.token)) as stream:
        container_id, create_op, _ = await request_container(
            user_client, template_id=templates["web-hello"]["id"], vmid=160
        )
        await create_container(worker_ctx, create_op)
        stop_op = await request_action(user_client, container_id, "stop")
        await stop_container(worker_ctx, stop_op)
        start_op = await request_action(user_client, container_id, "start")
        await start_container(worker_ctx, start_op)
        await stream.wait_for(lambda items: any(e["type"] == "started" for _, e in items))
    items = stream.items
    assert stream.retry == 2000

    # Every state change of the container, in order, from the stream alone.
    assert states(items, container_id) == [
        ("creating", None),
        ("ready", "running"),
        ("ready", "stopped"),
        ("ready", "running"),
    ]
    for op_id in (create_op, stop_op, start_op):
        assert operation_statuses(items, op_id) == ["queued", "running", "succeeded"], op_id
    types = [e["type"] for _, e in items]
    assert types[0] == "queued"
    assert types[-1] == "started"
    assert {"step", "created", "stopped", "service_discovered"} <= set(types)
    assert "log" not in types  # log lines stay on the container's progress stream
    positions = [p for p, _ in items]
    assert positions == sorted(set(positions))

    # The stored trail gives back exactly the same sequence: from the start, and resumed after any position.
    async with reading(StreamReader(server_url, user_client.token, params=[("after", "0")])) as replay:
        await replay.wait_for(lambda got: len(got) >= len(items))
    assert replay.items == items
    middle = positions[len(positions) // 2]
    resumed = StreamReader(server_url, user_client.token, last_event_id=middle)
    async with reading(resumed):
        await resumed.wait_for(lambda got: len(got) >= len([p for p in positions if p > middle]))
    assert resumed.items == [(p, e) for p, e in items if p > middle]

    # Filters: only some types, only one node's containers.
    wanted = [("after", "0"), ("type", "stopped"), ("type", "started"), ("node_id", registered_node["id"])]
    async with reading(StreamReader(server_url, user_client.token, params=wanted)) as filtered:
        await filtered.wait_for(lambda got: len(got) >= 2)
    assert [(e["type"], e["operation_id"]) for _, e in filtered.items] == [("stopped", stop_op), ("started", start_op)]


async def test_a_stream_sees_only_its_owner_and_survives_a_delete(
    user_client: UserClient,
    other_user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    worker_ctx: WorkerContext,
    server_url: str,
) -> None:
    async with (
        reading(StreamReader(server_url, other_user_client.token)) as other,
        reading(StreamReader(server_url, user_client.token)) as mine,
    ):
        container_id, create_op, _ = await request_container(
            user_client, template_id=templates["web-hello"]["id"], vmid=161
        )
        await create_container(worker_ctx, create_op)
        delete_op = await request_action(user_client, container_id, "delete")
        await delete_container(worker_ctx, delete_op)
        await mine.wait_for(lambda items: any(e["type"] == "deleted" for _, e in items))
    assert other.items == []
    deleted = [e for _, e in mine.items if e["type"] == "deleted"]
    assert deleted[0]["container"] == {"lifecycle": "deleted", "status": None}
    assert deleted[0]["operation"]["status"] == "succeeded"
    # The container row is gone; the stored trail still has its events for a stream resumed from the start.
    async with reading(StreamReader(server_url, user_client.token, params=[("after", "0")])) as replay:
        await replay.wait_for(lambda got: len(got) >= len(mine.items))
    assert [p for p, _ in replay.items] == [p for p, _ in mine.items]
    assert (await user_client.http.get(f"/api/operations/{delete_op}")).json()["container_id"] == container_id


async def test_positions_follow_commit_order_not_insert_order(
    user_client: UserClient, registered_node: dict[str, Any], worker_ctx: WorkerContext
) -> None:
    # Two writers: the first inserts its event, the second inserts and commits, then the first commits. A reader
    # that saw the second's event must still get the first one after it: positions are given at commit.
    created, _, _ = await request_container(user_client, vmid=162, os_template="debian-12-standard")
    container_id = UUID(created)
    db, logbuffer = worker_ctx.sessionmaker, worker_ctx.logbuffer
    async with db() as slow, db() as fast:
        early = await EventService(slow, logbuffer=logbuffer).record(container_id, "retried", "inserted first")
        late = await EventService(fast, logbuffer=logbuffer).record(container_id, "retried", "inserted second")
        assert early.id < late.id
        await fast.commit()
        await slow.commit()
    async with db() as session:
        first = await session.get(Event, early.id)
        second = await session.get(Event, late.id)
        assert first is not None
        assert second is not None
        assert first.position is not None
        assert second.position is not None
        assert second.position < first.position
