"""A live API for schema fuzzing: uvicorn on a free loopback port, its own PostgreSQL database, Redis, the simulator.

Everything runs in one background thread with its own event loop, because schemathesis drives synchronous tests
(hypothesis) that must not block the loop serving the API and the simulator.

Fixtures: `fuzz_target` (module scope: base URL, a bearer token, and ids of real resources of that user).
"""

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from infrahaus_api.app import create_app
from infrahaus_domain import migrations
from infrahaus_domain.db import create_engine
from infrahaus_domain.settings import (
    AuthServer,
    AuthSettings,
    DatabaseSettings,
    EncryptionKey,
    EncryptionSettings,
    HttpSettings,
    LogSettings,
    OutboundSettings,
    RedisSettings,
    SessionSettings,
    Settings,
)
from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig
from tests.fixtures.api import LOOPBACK, create_user_with_token
from tests.fixtures.nodes import node_body
from tests.fixtures.services import pg_url_for, temporary_database

REPO = Path(__file__).resolve().parents[2]
OPENAPI_PATH = REPO / "openapi" / "openapi.json"


@dataclass
class FuzzTarget:
    """The running API and real resources owned by the fuzzing user (path parameters may point at them)."""

    base_url: str
    token: str
    known_ids: dict[str, list[str]] = field(default_factory=dict)


class _ServerThread(threading.Thread):
    """Simulator and API served by uvicorn in a private event loop."""

    def __init__(self, settings_for: "_SettingsFactory", data_dir: Path) -> None:
        super().__init__(name="fuzz-server", daemon=True)
        self._settings_for = settings_for
        self._data_dir = data_dir
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self.port = 0
        self.simulator: Simulator | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the fixture, which fails the tests with it
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        sim_config = SimulatorConfig(
            auth_failure_delay=0.0, data_dir=self._data_dir / "pvesim", nodes=[SimNodeConfig(name="pve")]
        )
        self.simulator = Simulator(sim_config)
        await self.simulator.start()
        try:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            app = create_app(self._settings_for(self.simulator))
            config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
            self._server = uvicorn.Server(config)
            serve = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not serve.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await serve
        finally:
            await self.simulator.stop()

    def wait_started(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise TimeoutError("the fuzzing server did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self.join(timeout=30)


class _SettingsFactory:
    def __init__(self, database_url: str, redis_url: str, redis_prefix: str, keys: tuple[EncryptionKey, ...]) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.keys = keys

    def __call__(self, simulator: Simulator) -> Settings:
        node = simulator.nodes[0]
        return Settings(
            database=DatabaseSettings(url=self.database_url),
            redis=RedisSettings(url=self.redis_url, prefix=self.redis_prefix),
            encryption=EncryptionSettings(keys=self.keys),
            auth=AuthSettings(servers=(AuthServer(name="pve", url=node.api_url, fingerprint=node.fingerprint),)),
            sessions=SessionSettings(cookie_secure=False),
            http=HttpSettings(sse_heartbeat_seconds=0.5),
            # Only the simulator on loopback: any other host the fuzzer makes up is refused before a packet.
            outbound=OutboundSettings(allow=LOOPBACK, check_limit=1_000_000),
            logging=LogSettings(format="text", level="WARNING"),
            templates_dir=REPO / "templates",
        )


@pytest.fixture(scope="module")
def fuzz_database() -> Iterator[str]:
    """A migrated PostgreSQL database of its own: fuzzing writes freely without touching other tests' data."""
    with temporary_database("fuzz") as name:
        url = pg_url_for(name)

        async def upgrade() -> None:
            engine = create_engine(url)
            try:
                await migrations.upgrade(engine)
            finally:
                await engine.dispose()

        asyncio.run(upgrade())
        yield url


@pytest.fixture(scope="module")
def fuzz_target(
    fuzz_database: str,
    redis_url: str,
    redis_prefix: str,
    test_keyring: tuple[EncryptionKey, ...],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FuzzTarget]:
    """The API on a free port with a user (bearer token) who owns a node, a bucket, a template and a container."""
    factory = _SettingsFactory(fuzz_database, redis_url, f"{redis_prefix}fuzz:", test_keyring)
    server = _ServerThread(factory, tmp_path_factory.mktemp("fuzz"))
    server.start()
    try:
        server.wait_started(timeout=60)
        assert server.simulator is not None
        settings = factory(server.simulator)
        _, token = asyncio.run(create_user_with_token(settings, "fuzzer@pve"))
        target = FuzzTarget(base_url=f"http://127.0.0.1:{server.port}", token=token)
        _seed(target, server.simulator)
        yield target
    finally:
        server.stop()


def _seed(target: FuzzTarget, simulator: Simulator) -> None:
    """Real resources so that generated requests reach past the 404s: node, bucket + package, template, container."""
    node = simulator.nodes[0]
    with httpx.Client(base_url=target.base_url, headers={"Authorization": f"Bearer {target.token}"}) as http:

        def post(path: str, body: object, status: int) -> dict[str, object]:
            response = http.post(path, json=body)
            assert response.status_code == status, f"{path}: {response.status_code} {response.text}"
            answer: dict[str, object] = response.json()
            return answer

        created_node = post("/api/nodes", node_body(node, simulator.config), 201)
        bucket = post("/api/package-buckets", {"name": "fuzz-bucket", "description": "seed"}, 201)
        bucket_id = str(bucket["id"])
        post(f"/api/package-buckets/{bucket_id}/packages", {"packages": [{"manager": "apt", "name": "curl"}]}, 200)
        packages = http.get(f"/api/package-buckets/{bucket_id}").json()["packages"]
        post("/api/templates/discover", None, 200)
        templates = http.get("/api/templates").json()["items"]
        assert templates, "the example templates of templates/ were discovered"
        created = post("/api/containers", {"template_id": templates[0]["id"], "hostname": "fuzz-seed"}, 202)
        container, operation = created["container"], created["operation"]
        assert isinstance(container, dict)
        assert isinstance(operation, dict)
        target.known_ids = {
            "node_id": [str(created_node["id"])],
            "bucket_id": [bucket_id],
            "package_id": [str(p["id"]) for p in packages],
            "template_id": [str(t["id"]) for t in templates],
            "container_id": [str(container["id"])],
            "operation_id": [str(operation["id"])],
        }
