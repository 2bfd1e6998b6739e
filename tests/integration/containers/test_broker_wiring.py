"""Without an injected broker the API sends through Redis, in the namespace the worker reads (real Redis)."""

import asyncio
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from infrahaus_api.app import create_app
from infrahaus_domain.jobs import broker_namespace
from infrahaus_domain.settings import Settings
from tests.fixtures.api import UserClient, api_client
from tests.integration.containers.conftest import create_body


def receive_one(broker: RedisBroker, queue: str) -> dramatiq.Message[Any] | None:
    consumer = broker.consume(queue, prefetch=1, timeout=2000)
    try:
        for proxy in consumer:
            if proxy is not None:
                consumer.ack(proxy)
                return proxy._message
            return None
    finally:
        consumer.close()
    return None


async def test_create_sends_the_job_through_redis(
    settings: Settings, user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    app = create_app(settings)
    async with app.lifespan(), api_client(app, {"Authorization": f"Bearer {user_client.token}"}) as http:
        response = await http.post("/api/containers", json=create_body())
        assert response.status_code == 202, response.text
        operation_id = response.json()["operation"]["id"]

    assert settings.redis.url is not None
    worker_side = RedisBroker(url=settings.redis.url, namespace=broker_namespace(settings.redis.prefix), middleware=[])  # type: ignore[no-untyped-call]
    worker_side.declare_queue("containers")
    try:
        message = await asyncio.to_thread(receive_one, worker_side, "containers")
    finally:
        worker_side.close()
    assert message is not None
    assert message.actor_name == "container.create"
    assert message.kwargs == {"operation_id": operation_id}
