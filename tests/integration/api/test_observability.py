"""Request ids, structured access lines without secrets, and the Prometheus endpoint."""

import json
import logging
from typing import Any

import httpx
import pytest

from infrahaus_api.app import create_app
from infrahaus_domain.logs import JsonFormatter, configure_logging
from infrahaus_domain.settings import Settings
from tests.fixtures.api import UserClient, api_client, assert_problem, login, running


async def test_request_id_is_generated_and_echoed(client: httpx.AsyncClient) -> None:
    generated = await client.get("/health/live")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await client.get("/health/live", headers={"X-Request-ID": "trace-abc.1"})
    assert echoed.headers["x-request-id"] == "trace-abc.1"
    # A hostile id is replaced, never reflected.
    hostile = await client.get("/health/live", headers={"X-Request-ID": "a\tb<script>"})
    assert hostile.headers["x-request-id"] != "a\tb<script>"


@pytest.mark.usefixtures("sim_node")
async def test_access_lines_are_json_with_request_id_and_no_secret(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("INFO", "json")
    caplog.set_level(logging.INFO)
    await login(client, "root@pam", "demo")
    bad = await client.post(
        "/api/auth/login",
        json={"username": "root@pam", "password": "not-the-password-xyz"},
        headers={"X-Request-ID": "login-attempt-2"},
    )
    assert bad.status_code == 401
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    access = [line for line in lines if line["logger"] == "infrahaus.api.access"]
    assert any(line.get("request_id") == "login-attempt-2" and line["status"] == 401 for line in access)
    assert all(line["route"] for line in access)
    dump = "\n".join(json.dumps(line) for line in lines)
    assert "not-the-password-xyz" not in dump
    assert '"demo"' not in dump


METRICS_TOKEN = "metrics-token-for-the-scraper"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(http={"metrics_token": METRICS_TOKEN})


SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


async def test_metrics_need_the_metrics_token(user_client: UserClient, client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/metrics"), 401, "unauthenticated")
    assert_problem(await client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}), 401)
    # A user's API token is not a metrics token.
    assert_problem(await client.get("/metrics", headers={"Authorization": f"Bearer {user_client.token}"}), 401)
    assert (await client.get("/metrics", headers=SCRAPER)).status_code == 200


async def test_without_a_metrics_token_the_api_port_serves_no_metrics(settings: Settings) -> None:
    async with running(create_app(settings.replace(http={"metrics_token": None}))) as app, api_client(app) as http:
        assert_problem(await http.get("/metrics"), 404, "not_found")
        assert_problem(await http.get("/metrics", headers=SCRAPER), 404, "not_found")


async def test_metrics_exports_request_counters(user_client: UserClient, client: httpx.AsyncClient) -> None:
    assert (await user_client.http.get("/api/nodes")).status_code == 200
    response = await client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200
    [content_type] = response.headers.get_list("content-type")
    media_type, *parameters = [part.strip() for part in content_type.split(";")]
    assert media_type == "text/plain"
    names = [p.partition("=")[0].lower() for p in parameters]
    assert sorted(names) == ["charset", "version"], content_type  # each parameter once
    text = response.text
    assert 'infrahaus_http_requests_total{method="GET",route="/api/nodes",status="200"}' in text
    assert "infrahaus_http_request_duration_seconds_bucket" in text


async def test_metrics_export_proxmox_call_latency(
    user_client: UserClient, registered_node: dict[str, Any], client: httpx.AsyncClient
) -> None:
    status = await user_client.http.get(f"/api/nodes/{registered_node['id']}/status")
    assert status.status_code == 200
    text = (await client.get("/metrics", headers=SCRAPER)).text
    assert (
        'infrahaus_proxmox_request_duration_seconds_count{endpoint="/nodes/{node}/status",method="GET",status="200"}'
        in text
    )
