"""Services of a container: list with URLs, audited and rate-limited credential reveals, journal lines, refresh."""

from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.models.containers import Container
from infrahaus_proxmox.pct import PctExecRunner, SshTarget
from tests.fixtures.api import UserClient, assert_no_secrets, assert_problem
from tests.fixtures.pct import new_container
from tests.integration.containers_read.conftest import AddContainer, Fleet, add_services

SECRETS = {"ROOT_PASSWORD": "Zx9-root-pw-7f3a1c", "APP_PASSWORD": "Qq4-app-pw-91bd0e"}
SERVICES: list[dict[str, Any]] = [
    {"name": "nginx", "type": "systemd", "port": 80, "protocol": "tcp", "status": "running"},
    {"name": "mariadb", "type": "systemd", "port": 3306, "protocol": "tcp", "status": "running"},
    {"name": "grafana", "type": "systemd", "port": 3000, "protocol": "tcp", "status": "running"},
    {"name": "portal", "type": "process", "port": 8443, "protocol": "tcp", "status": "running"},
    {"name": "ssh", "type": "systemd", "port": 22, "protocol": "tcp", "status": "running", "is_system": True},
    {"name": "cron", "type": "systemd", "status": "running", "is_system": True},
    {"name": "myapp", "type": "credentials", "status": "unknown"},
]
CREDENTIALS = {
    "mariadb": {"ROOT_PASSWORD": SECRETS["ROOT_PASSWORD"]},
    "myapp": {"APP_PASSWORD": SECRETS["APP_PASSWORD"]},
}


@pytest.fixture
async def stocked(add_container: AddContainer, db: async_sessionmaker[AsyncSession], box: SecretBox) -> Container:
    container = await add_container("pve1", 200, ip_address="192.0.2.10")
    await add_services(db, box, container, SERVICES, CREDENTIALS)
    return container


async def test_services_list_urls_and_credential_flags_but_no_values(
    user_client: UserClient, stocked: Container
) -> None:
    response = await user_client.http.get(f"/api/containers/{stocked.id}/services")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ip_address"] == "192.0.2.10"
    assert body["discovered_at"] is not None
    services = {s["name"]: s for s in body["services"]}
    assert [s["name"] for s in body["services"]] == ["grafana", "mariadb", "myapp", "nginx", "portal", "cron", "ssh"]
    assert services["nginx"] == {
        "name": "nginx",
        "type": "systemd",
        "port": 80,
        "protocol": "tcp",
        "status": "running",
        "is_system": False,
        "url": "http://192.0.2.10",
        "has_credentials": False,
    }
    assert services["grafana"]["url"] == "http://192.0.2.10:3000"
    assert services["portal"]["url"] == "https://192.0.2.10:8443"
    assert services["mariadb"]["url"] == "tcp://192.0.2.10:3306"
    assert (services["mariadb"]["has_credentials"], services["myapp"]["has_credentials"]) == (True, True)
    assert (services["cron"]["url"], services["myapp"]["url"]) == (None, None)
    assert services["ssh"]["is_system"] is True


async def test_reveal_decrypts_and_records_each_view_and_nothing_else_leaks(
    user_client: UserClient, stocked: Container
) -> None:
    base = f"/api/containers/{stocked.id}"
    for _ in range(2):
        response = await user_client.http.get(f"{base}/services/mariadb/credentials")
        assert response.status_code == 200, response.text
        assert response.json() == {"service": "mariadb", "credentials": {"ROOT_PASSWORD": SECRETS["ROOT_PASSWORD"]}}
        assert response.headers["cache-control"] == "no-store"
    response = await user_client.http.get(f"{base}/services/myapp/credentials")
    assert response.json()["credentials"] == {"APP_PASSWORD": SECRETS["APP_PASSWORD"]}
    assert_problem(await user_client.http.get(f"{base}/services/nginx/credentials"), 404, "not_found")

    events = (await user_client.http.get(f"{base}/events", params={"type": "credentials_viewed"})).json()
    assert events["counts"]["credentials_viewed"] == 3
    viewed = [e["metadata"] for e in events["items"]]
    assert [m["service"] for m in viewed] == ["myapp", "mariadb", "mariadb"]
    assert viewed[1]["keys"] == ["ROOT_PASSWORD"]
    assert viewed[1]["user_id"] == str(user_client.user_id)

    texts = []
    for path in ("/api/containers", f"{base}", f"{base}/services", f"{base}/events", "/api/containers/summary"):
        response = await user_client.http.get(path)
        assert response.status_code == 200, (path, response.text)
        texts.append(response.text)
    assert_no_secrets(SECRETS.values(), *texts)


@pytest.mark.parametrize(
    "read_settings",
    [{"inventory": {"cache_seconds": 0.0, "node_timeout": 1.0}, "credentials": {"reveal_limit": 3}}],
)
async def test_reveals_are_rate_limited_per_user(
    user_client: UserClient, other_user_client: UserClient, stocked: Container
) -> None:
    path = f"/api/containers/{stocked.id}/services/mariadb/credentials"
    for _ in range(3):
        assert (await user_client.http.get(path)).status_code == 200
    response = await user_client.http.get(path)
    assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= 61
    events = (await user_client.http.get(f"/api/containers/{stocked.id}/events")).json()
    assert events["counts"]["credentials_viewed"] == 3
    # Another user's counter is their own (and the container is not theirs).
    assert_problem(await other_user_client.http.get(path), 404, "not_found")


UNIT = "[Unit]\nDescription=Demo web app\n[Service]\nExecStart=/usr/local/bin/webapp --port 8080\n"


async def test_service_logs_read_the_units_journal(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    node = fleet.node("pve1")
    new_container(node.state, 250, running=True, hostname="web1")
    container = await add_container("pve1", 250, guest=False)
    runner = PctExecRunner(
        SshTarget(host="127.0.0.1", port=node.ssh_port, username="root", password="demo", host_key=node.ssh_host_key)
    )
    try:
        await runner.push(250, UNIT.encode(), "/etc/systemd/system/webapp.service")
        result = await runner.exec(250, ["systemctl", "start", "webapp"], timeout=20)
        assert result.exit_code == 0, result.lines
        result = await runner.exec(250, ["systemctl", "restart", "webapp"], timeout=20)
        assert result.exit_code == 0, result.lines
    finally:
        await runner.aclose()

    base = f"/api/containers/{container.id}/services"
    response = await user_client.http.get(f"{base}/webapp/logs", params={"lines": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["service"], body["unit"]) == ("webapp", "webapp")
    assert len(body["lines"]) == 2
    assert body["lines"][1].endswith("Started webapp.service - Demo web app.")
    full = (await user_client.http.get(f"{base}/webapp.service/logs")).json()
    # Default 100 lines: the whole journal of the unit (start, then stop and start again), oldest first.
    assert len(full["lines"]) > 4
    assert full["lines"][-2:] == body["lines"]
    assert (await user_client.http.get(f"{base}/ghost/logs")).json()["lines"] == ["-- No entries --"]

    for name in ("-rf", "a;b", "x$(id)", "a b"):
        body = assert_problem(await user_client.http.get(f"{base}/{name}/logs"), 422, "validation_failed")
        assert body["errors"][0]["field"] == "name"
    for lines in (0, 1001, -5):
        body = assert_problem(
            await user_client.http.get(f"{base}/webapp/logs", params={"lines": lines}), 422, "validation_failed"
        )
        assert body["errors"][0]["field"] == "lines"


async def test_service_logs_of_a_stopped_container_or_a_down_node(
    user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    node = fleet.node("pve1")
    new_container(node.state, 251, running=False, hostname="db1")
    stopped = await add_container("pve1", 251, guest=False)
    response = await user_client.http.get(f"/api/containers/{stopped.id}/services/mariadb/logs")
    assert_problem(response, 409, "invalid_state")
    down = await add_container("pve2", 300)
    fleet.node("pve2").faults.unreachable = True
    response = await user_client.http.get(f"/api/containers/{down.id}/services/mariadb/logs")
    assert_problem(response, 502, "node_unreachable")


async def test_refresh_queues_a_services_refresh_operation(
    app: Litestar, user_client: UserClient, fleet: Fleet, add_container: AddContainer
) -> None:
    running = await add_container("pve1", 200)
    response = await user_client.http.post(f"/api/containers/{running.id}/services/refresh")
    assert response.status_code == 202, response.text
    op = response.json()
    assert (op["kind"], op["status"], op["container_id"]) == ("services_refresh", "queued", str(running.id))
    assert response.headers["location"] == f"/api/operations/{op['id']}"
    broker = app.state.resources.broker
    assert isinstance(broker, StubBroker)
    assert sum(len(q.queue) for q in broker.queues.values()) == 1
    item = (await user_client.http.get("/api/containers")).json()["items"][0]
    assert (item["active_operation"]["id"], item["allowed_actions"]) == (op["id"], [])
    assert_problem(await user_client.http.post(f"/api/containers/{running.id}/services/refresh"), 409, "container_busy")

    stopped = await add_container("pve1", 201, status="stopped")
    response = await user_client.http.post(f"/api/containers/{stopped.id}/services/refresh")
    assert_problem(response, 409, "invalid_state")
