"""`/health/live` (the process answers) and `/health/ready` (database, Redis when configured, the job broker, and
added checks)."""

import asyncio
import logging

import dramatiq
import msgspec
from dramatiq.brokers.redis import RedisBroker
from litestar import Response, get
from sqlalchemy import text

from infrahaus_api.errors import problem_response
from infrahaus_api.resources import AppResources, ReadinessCheck

logger = logging.getLogger("infrahaus.api")
_CHECK_TIMEOUT = 3.0


class Health(msgspec.Struct, kw_only=True):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


async def _broker_ready(broker: dramatiq.Broker) -> None:
    """The Redis broker answers a ping on its own connection pool; the embedded in-memory broker is always there."""
    if isinstance(broker, RedisBroker):
        # A blocking client: keep the ping off the event loop.
        await asyncio.to_thread(broker.client.ping)


@get(
    "/health/live",
    operation_id="getLiveness",
    tags=["health"],
    exclude_from_auth=True,
    security=[{}],
    summary="The process is up",
)
async def live() -> Health:
    return Health(status="ok")


@get(
    "/health/ready",
    operation_id="getReadiness",
    tags=["health"],
    exclude_from_auth=True,
    security=[{}],
    summary="Check that the dependencies answer",
    description="The database, Redis and the job broker; a 503 problem names what fails.",
)
async def ready(resources: AppResources) -> Response[Health]:

    async def database() -> None:
        async with resources.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await resources.ports.cache.exists("health")

    checks: dict[str, ReadinessCheck] = {"database": database}
    if not resources.settings.embedded:
        checks["redis"] = redis
    broker = resources.broker
    if broker is not None:
        checks["broker"] = lambda: _broker_ready(broker)
    checks.update(resources.readiness_checks)
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                await check()
            results[name] = "ok"
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = "failing"
    failing = sorted(name for name, state in results.items() if state != "ok")
    if failing:
        return problem_response(503, "not_ready", f"Not ready: {', '.join(failing)}.")  # type: ignore[return-value]
    return Response(Health(status="ok", checks=results))
