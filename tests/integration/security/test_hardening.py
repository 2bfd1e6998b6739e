"""Smaller hardening: no CORS wildcard with credentials, private embedded files, no caching of answers that carry a
secret, and no API docs page loading scripts from a CDN unless asked for."""

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from infrahaus.commands.dev import _prepare_database, embedded_settings
from infrahaus_api.app import create_app
from infrahaus_domain.errors import SettingsError
from infrahaus_domain.settings import Settings
from tests.fixtures.api import BASE_URL, api_client, assert_problem, login, running


@pytest.mark.parametrize("origins", ["*", "https://ui.example,*", " * "])
def test_a_cors_wildcard_stops_the_process_at_start(origins: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"INFRAHAUS_CORS_ORIGINS": origins})
    assert raised.value.variable == "INFRAHAUS_CORS_ORIGINS"


@pytest.mark.parametrize("origins", ["ui.example", "https://ui.example/path", "https://ui.example\nx"])
def test_cors_origins_must_be_origins(origins: str) -> None:
    with pytest.raises(SettingsError, match="INFRAHAUS_CORS_ORIGINS"):
        Settings.from_env({"INFRAHAUS_CORS_ORIGINS": origins})


def test_settings_built_in_code_cannot_open_cors_to_everyone(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="INFRAHAUS_CORS_ORIGINS"):
        create_app(settings.replace(http={"cors_origins": ("*",)}))


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("loose_umask")
def test_the_embedded_database_and_key_file_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = embedded_settings({}, data_dir)
    asyncio.run(_prepare_database(settings.replace(templates_dir=None)))
    files = [data_dir / "infrahaus.db", data_dir / "encryption.key"]
    files += [p for p in (data_dir / "infrahaus.db-wal", data_dir / "infrahaus.db-shm") if p.exists()]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


@pytest.mark.usefixtures("loose_umask")
def test_an_existing_database_file_is_narrowed_to_the_owner(tmp_path: Path) -> None:
    database = tmp_path / "infrahaus.db"
    database.touch(mode=0o644)
    asyncio.run(_prepare_database(embedded_settings({}, tmp_path).replace(templates_dir=None)))
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


@pytest.mark.usefixtures("sim_node")
async def test_answers_with_secrets_are_not_stored_by_caches(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    csrf = response.json()["csrf_token"]
    me = await client.get("/api/auth/me")
    assert me.headers["cache-control"] == "no-store"
    created = await client.post("/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"


@pytest.mark.usefixtures("sim_node")
async def test_a_failed_login_is_not_cached_either(client: httpx.AsyncClient) -> None:
    await login(client)
    failed = await client.post("/api/auth/login", json={"username": "root@pam", "password": "wrong"})
    assert_problem(failed, 401)


async def test_the_api_docs_page_is_off_by_default(app: Litestar) -> None:
    # A plain client: Litestar answers unknown pages under the schema path with its own small HTML 404.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        document = await http.get("/api/schema")
        assert document.status_code == 200
        assert document.json()["openapi"].startswith("3.")
        assert (await http.get("/api/schema/openapi.json")).json() == document.json()
        for page in ("/api/schema/swagger", "/api/schema/redoc", "/api/schema/elements", "/api/schema/rapidoc"):
            response = await http.get(page)
            assert response.status_code == 404, page
            assert "<script" not in response.text


async def test_the_api_docs_page_is_served_only_when_asked_for(settings: Settings) -> None:
    async with running(create_app(settings.replace(http={"docs_page": True}))) as app, api_client(app) as http:
        page = await http.get("/api/schema/swagger")
        assert page.status_code == 200
        assert "swagger-ui" in page.text
