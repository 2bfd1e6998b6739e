"""Worker tests: actor functions awaited with a test context against PostgreSQL, Redis and the simulator.

Containers and operations are created through the real API (`POST /api/containers`), exactly as a client
would; the test then runs the operation's actor function itself instead of a worker process.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from dramatiq.brokers.stub import StubBroker

from infrahaus_domain.settings import Settings, WorkerTimings
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "templates"

# Short timings keep failure paths fast; nothing in the simulator needs long.
FAST_TIMINGS = WorkerTimings(
    create_task=20,
    start_stop=20,
    shutdown_timeout=5,
    script=30,
    packages=30,
    creation=120,
    lifecycle=60,
    lock_wait=10,
    ready_wait=10,
    heartbeat_interval=0.5,
    heartbeat_stale=3,
    requeue_after=1,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The API test settings plus the repository's example templates."""
    return msgspec.structs.replace(settings, templates_dir=TEMPLATES_DIR)


@pytest.fixture
def timings(request: pytest.FixtureRequest) -> WorkerTimings:
    """`FAST_TIMINGS`, changed for one test by `@pytest.mark.timings(lock_wait=2, ...)` (a test about a lock need not
    wait as long as every other test may)."""
    marker = request.node.get_closest_marker("timings")
    return msgspec.structs.replace(FAST_TIMINGS, **marker.kwargs) if marker else FAST_TIMINGS


@pytest.fixture
async def worker_ctx(
    settings: Settings, stub_broker: StubBroker, timings: WorkerTimings
) -> AsyncIterator[WorkerContext]:
    """A worker context on the test's loop (its own engine, Redis ports and log store) with `timings`."""
    ctx = await WorkerContext.open(settings, stub_broker, timings=timings)
    try:
        yield ctx
    finally:
        await ctx.aclose()


@pytest.fixture
async def templates(user_client: UserClient) -> dict[str, dict[str, Any]]:
    """The example templates synced into the database, by name (with their scripts)."""
    response = await user_client.http.post("/api/templates/discover")
    assert response.status_code in (200, 201), response.text
    assert not response.json()["errors"], response.json()
    listed = await user_client.http.get("/api/templates", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    result: dict[str, dict[str, Any]] = {}
    for item in listed.json()["items"]:
        detail = await user_client.http.get(f"/api/templates/{item['id']}")
        result[item["name"]] = detail.json()
    return result


@pytest.fixture
def make_template(user_client: UserClient) -> Any:
    """Factory: `await make_template(name, scripts=[(name, content)], files=[...], packages=[...])` -> template id."""

    async def make(
        name: str,
        *,
        scripts: list[tuple[str, str]] | None = None,
        files: list[dict[str, Any]] | None = None,
        packages: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> str:
        body = {
            "name": name,
            "os_template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "scripts": [{"name": n, "content": c, "position": i * 10} for i, (n, c) in enumerate(scripts or [])],
            "files": files or [],
            "packages": packages or [],
            **fields,
        }
        response = await user_client.http.post("/api/templates", json=body)
        assert response.status_code == 201, response.text
        template_id: str = response.json()["id"]
        return template_id

    return make
