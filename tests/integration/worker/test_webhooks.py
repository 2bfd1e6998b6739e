"""Webhook deliveries from the worker: every event of a creation, a stop and a delete reaches its owner's webhooks
(and nobody else's), signed per Standard Webhooks and verified by the `standardwebhooks` package; a receiver
answering 500 gets retries with growing delays up to the attempt limit, all in the deliveries log; a URL the outbound
policy refuses by the time of sending is never connected to; operations never wait for a delivery."""

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker

from infrahaus_domain.settings import Settings
from infrahaus_pvesim import RunningNode
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import delete_container, stop_container
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.webhooks import deliver_forever
from tests.fixtures.api import UserClient
from tests.fixtures.webhook_receiver import Received, Receiver
from tests.integration.worker.conftest import FAST_TIMINGS
from tests.integration.worker.helpers import operation, request_action, request_container
from tests.integration.worker.test_day_two import change, created, drift, make

BACKOFF_BASE = 0.3
MAX_ATTEMPTS = 4


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(
        webhooks={
            "backoff_base": BACKOFF_BASE,
            "backoff_max": 10.0,
            "max_attempts": MAX_ATTEMPTS,
            "timeout": 2.0,
            "poll_interval": 0.5,
        }
    )


async def register(user: UserClient, receiver: Receiver, path: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": receiver.url(path)}
    if events is not None:
        body["events"] = events
    response = await user.http.post("/api/webhooks", json=body)
    assert response.status_code == 201, response.text
    hook: dict[str, Any] = response.json()
    receiver.secrets[path] = hook["secret"]
    return hook


async def deliveries(user: UserClient, hook: dict[str, Any]) -> list[dict[str, Any]]:
    response = await user.http.get(f"/api/webhooks/{hook['id']}/deliveries", params={"limit": 100})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def settled(user: UserClient, hook: dict[str, Any], timeout: float = 20) -> list[dict[str, Any]]:
    """The webhook's deliveries once none is pending any more (the answer is recorded after it arrived)."""
    deadline = time.monotonic() + timeout
    while True:
        log = await deliveries(user, hook)
        if log and all(d["status"] != "pending" for d in log):
            return log
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.05)


def types(received: list[Received]) -> list[str]:
    return sorted(r.payload["type"] for r in received)


async def test_every_event_reaches_its_owners_webhooks_signed(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    other_user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    receiver: Receiver,
) -> None:
    everything = await register(user_client, receiver, "/alice")
    deleted_only = await register(user_client, receiver, "/alice-deleted", ["container.deleted"])
    await register(other_user_client, receiver, "/mallory")

    container_id, create_op, _ = await request_container(
        user_client, template_id=templates["web-hello"]["id"], vmid=190
    )
    await create_container(worker_ctx, create_op)
    stop_op = await request_action(user_client, container_id, "stop")
    await stop_container(worker_ctx, stop_op)
    delete_op = await request_action(user_client, container_id, "delete")
    await delete_container(worker_ctx, delete_op)
    for op_id in (create_op, stop_op, delete_op):
        assert (await operation(worker_ctx, op_id)).status == "succeeded"
    # The operations ended without any delivery sent: they never wait for a webhook.
    assert receiver.received == []
    assert {d["status"] for d in await deliveries(user_client, everything)} == {"pending"}

    worker_ctx.spawn(deliver_forever(worker_ctx))
    expected = sorted(
        [
            "container.created",
            "container.ready",
            "operation.succeeded",
            "operation.succeeded",
            "operation.succeeded",
            "container.deleted",
        ]
    )
    await wait_for(lambda: len(receiver.on("/alice")) >= len(expected), "alice's deliveries")
    await wait_for(lambda: len(receiver.on("/alice-deleted")) >= 1, "the container.deleted delivery")
    assert types(receiver.on("/alice")) == expected
    assert types(receiver.on("/alice-deleted")) == ["container.deleted"]
    assert all(r.verified for r in receiver.received), [r.headers for r in receiver.received if not r.verified]
    assert len({r.message_id for r in receiver.received}) == len(receiver.received)
    for r in receiver.on("/alice"):
        data = r.payload["data"]
        assert data["container_id"] == container_id
        assert r.headers["webhook-signature"].startswith("v1,")
    succeeded = [
        r.payload["data"]["operation_id"] for r in receiver.on("/alice") if r.payload["type"] == "operation.succeeded"
    ]
    assert sorted(succeeded) == sorted([create_op, stop_op, delete_op])

    log = await settled(user_client, everything)
    assert len(log) == len(expected)
    for item in log:
        assert item["status"] == "delivered", item
        assert item["attempts"] == 1
        assert item["response_code"] == 200
        assert item["latency_ms"] is not None
        assert item["next_attempt_at"] is None
    assert {item["id"] for item in log} == {r.message_id for r in receiver.on("/alice")}
    assert len(await deliveries(user_client, deleted_only)) == 1
    # Nothing of Alice's went to Mallory's webhook.
    assert receiver.on("/mallory") == []


async def test_a_failed_creation_on_an_unreachable_node(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
    receiver: Receiver,
) -> None:
    await register(user_client, receiver, "/hook", ["container.failed", "operation.failed", "node.unreachable"])
    worker_ctx.spawn(deliver_forever(worker_ctx))
    template_id = await make_template("proxied")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=191)
    sim_node.faults.fail_http(596, method="POST", path_contains="/lxc")
    await create_container(worker_ctx, op_id)
    assert (await operation(worker_ctx, op_id)).status == "failed"
    await wait_for(lambda: len(receiver.on("/hook")) >= 3, "three deliveries")
    assert types(receiver.on("/hook")) == ["container.failed", "node.unreachable", "operation.failed"]
    assert all(r.verified for r in receiver.received)
    failed = receiver.on("/hook")[0].payload["data"]
    assert failed["container_id"] == container_id
    assert failed["metadata"]["code"] == "node_unreachable"


async def test_a_receiver_answering_500_gets_retries_with_growing_delays(
    worker_ctx: WorkerContext, user_client: UserClient, receiver: Receiver
) -> None:
    receiver.status = 500
    hook = await register(user_client, receiver, "/hook")
    worker_ctx.spawn(deliver_forever(worker_ctx))
    queued = await user_client.http.post(f"/api/webhooks/{hook['id']}/test")
    assert queued.status_code == 202, queued.text

    log = await settled(user_client, hook)
    attempts = receiver.on("/hook")
    assert len(attempts) == MAX_ATTEMPTS  # bounded: no attempt after the last
    assert {r.message_id for r in attempts} == {queued.json()["id"]}  # the same message each time
    assert all(r.verified for r in attempts)
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    for number, gap in enumerate(gaps, start=1):
        assert gap >= BACKOFF_BASE * 2 ** (number - 1) * 0.95, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps

    [delivery] = log
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == MAX_ATTEMPTS
    assert delivery["response_code"] == 500
    assert delivery["next_attempt_at"] is None
    recorded = delivery["attempt_log"]
    assert [a["attempt"] for a in recorded] == list(range(1, MAX_ATTEMPTS + 1))
    assert {a["response_code"] for a in recorded} == {500}
    times = [datetime.fromisoformat(a["at"]) for a in recorded]
    logged_gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert logged_gaps[0] < logged_gaps[1] < logged_gaps[2], logged_gaps


async def test_a_url_refused_by_the_time_of_sending_is_never_connected_to(
    settings: Settings, stub_broker: StubBroker, user_client: UserClient, receiver: Receiver
) -> None:
    hook = await register(user_client, receiver, "/hook")
    # The operator denied loopback since the webhook was registered (the worker reads its own settings).
    denied = settings.replace(outbound={"deny": ("127.0.0.0/8",)})
    ctx = await WorkerContext.open(denied, stub_broker, timings=FAST_TIMINGS)
    try:
        ctx.spawn(deliver_forever(ctx))
        queued = await user_client.http.post(f"/api/webhooks/{hook['id']}/test")
        assert queued.status_code == 202
        log = await settled(user_client, hook)
    finally:
        await ctx.aclose()
    [delivery] = log
    assert delivery["status"] == "failed"  # no retry can help
    assert delivery["attempts"] == 1
    assert delivery["response_code"] is None
    assert "not allowed" in delivery["last_error"]
    assert receiver.received == []


@pytest.mark.usefixtures("registered_node")
async def test_drift_is_announced_once(worker_ctx: WorkerContext, user_client: UserClient, receiver: Receiver) -> None:
    hook = await register(user_client, receiver, "/hook", ["drift.detected"])
    template = await make(user_client, name="app", conf="version=1\n", script="echo one", packages=["busybox"])
    container_id = await created(worker_ctx, user_client, template["id"], 192)
    assert (await drift(user_client, container_id))["in_sync"]
    await change(user_client, template["id"], name="app", conf="version=2\n", script="echo one", packages=["busybox"])
    report = await drift(user_client, container_id, revision="latest")
    assert not report["in_sync"]
    # Found again: the same drift is not announced twice.
    await drift(user_client, container_id, revision="latest")

    worker_ctx.spawn(deliver_forever(worker_ctx))
    [delivery] = await settled(user_client, hook)
    assert delivery["event_type"] == "drift.detected"
    [received] = receiver.on("/hook")
    assert received.verified
    data = received.payload["data"]
    assert data["container_id"] == container_id
    assert data["revision"] == 2
    assert [(i["kind"], i["state"]) for i in data["items"]] == [("file", "changed")]
