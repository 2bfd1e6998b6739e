"""One error shape: every failure is problem+json with a stable code, through the one table in errors.py."""

from collections.abc import AsyncIterator

import httpx
import pytest
from advanced_alchemy.exceptions import IntegrityError, NotFoundError
from litestar import get

from infrahaus_api.app import create_app
from infrahaus_domain.errors import ConflictError, DomainError, RateLimited
from infrahaus_domain.settings import DatabaseSettings, EncryptionSettings, RedisSettings, Settings
from tests.fixtures.api import SessionClient, UserClient, api_client, assert_problem, running


@get("/boom/{kind:str}", sync_to_thread=False)
def boom(kind: str) -> None:
    errors: dict[str, Exception] = {
        "runtime": RuntimeError("database password=hunter2 at /srv/secret"),
        "aa-not-found": NotFoundError("row 42 of table users"),
        "aa-integrity": IntegrityError("duplicate key value violates unique constraint uq_x"),
        "conflict": ConflictError("Name already used."),
        "custom": DomainError("Something specific.", code="vmid_taken"),
        "rate": RateLimited(retry_after=7),
    }
    raise errors[kind]


@pytest.fixture
async def boom_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    application.register(boom)
    async with running(application), api_client(application) as http:
        yield http


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("runtime", 500, "internal_error"),
        ("aa-not-found", 404, "not_found"),
        ("aa-integrity", 409, "conflict"),
        ("conflict", 409, "conflict"),
        ("custom", 400, "vmid_taken"),
        ("rate", 429, "rate_limited"),
    ],
)
async def test_exceptions_map_through_the_table(
    boom_client: httpx.AsyncClient, kind: str, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await boom_client.get(f"/boom/{kind}")
    body = assert_problem(response, status, code)
    for leaked in ("hunter2", "/srv/secret", "row 42", "uq_x", "Traceback"):
        assert leaked not in response.text
    if kind == "runtime":
        assert body["detail"] == "An unexpected error occurred."
        assert "unhandled error on GET /boom/runtime" in caplog.text
    if kind == "rate":
        assert response.headers["Retry-After"] == "7"


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/does-not-exist"), 404, "not_found")
    assert_problem(await client.get("/nothing-here"), 404, "not_found")
    response = await client.put("/api/auth/login", json={})
    body = assert_problem(response, 405, "method_not_allowed")
    assert body["title"] == "Method Not Allowed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": 5, "password": "x"}, "username"),
        ({"password": "x"}, "username"),
        ({"username": "root", "password": "x", "realm": "bad realm!"}, "realm"),
        ({"username": "root", "password": "x", "surprise": True}, "surprise"),
        ([1, 2], "body"),
    ],
)
async def test_body_validation_is_422_with_fields(client: httpx.AsyncClient, body: object, field: str) -> None:
    response = await client.post("/api/auth/login", json=body)
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"], problem
    assert problem["errors"][0]["field"] == field, problem
    assert problem["errors"][0]["message"]


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login", content=b'{"username": ', headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"][0]["field"] == "body"


async def test_path_parameter_validation_is_422(user_client: UserClient) -> None:
    response = await user_client.http.delete("/api/auth/tokens/not-a-uuid")
    assert response.status_code in {404, 422}
    assert_problem(response)


async def test_wrong_content_type_is_415(session_client: SessionClient) -> None:
    user_client = session_client
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = await user_client.http.post(
            "/api/auth/tokens", content=b'{"name": "x"}', headers={"Content-Type": content_type}
        )
        assert_problem(response, 415, "unsupported_media_type")
    ok = await user_client.http.post(
        "/api/auth/tokens", content=b'{"name": "x"}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 201


async def test_oversized_body_is_413(session_client: SessionClient, settings: Settings) -> None:
    user_client = session_client
    huge = b'{"name": "' + b"x" * (settings.http.max_request_body_bytes + 10) + b'"}'
    response = await user_client.http.post(
        "/api/auth/tokens", content=huge, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    assert live.json() == {"status": "ok", "checks": {}}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


async def test_readiness_fails_as_a_problem_when_a_dependency_is_down(settings: Settings) -> None:
    broken = create_app(
        Settings(
            database=DatabaseSettings(url="postgresql+psycopg://nobody@127.0.0.1:1/none"),
            redis=RedisSettings(url="redis://127.0.0.1:1/0"),
            encryption=EncryptionSettings(keys=settings.encryption.keys),
        )
    )
    async with running(broken), api_client(broken) as http:
        response = await http.get("/health/ready")
        body = assert_problem(response, 503, "not_ready")
        assert "database" in body["detail"]
        assert "redis" in body["detail"]
        assert "broker" in body["detail"]


async def test_unreachable_database_and_redis_answer_503(settings: Settings) -> None:
    broken = create_app(
        Settings(
            database=DatabaseSettings(url="postgresql+psycopg://nobody@127.0.0.1:1/none"),
            redis=RedisSettings(url="redis://127.0.0.1:1/0"),
            encryption=EncryptionSettings(keys=settings.encryption.keys),
        )
    )
    async with running(broken), api_client(broken) as http:
        bearer = await http.get("/api/auth/me", headers={"Authorization": "Bearer ihs_0123456789abcdef_secret"})
        assert_problem(bearer, 503, "service_unavailable")
        http.cookies.set("infrahaus_session", "some-session", domain="testserver.local")
        cookie = await http.get("/api/auth/me")
        assert_problem(cookie, 503, "service_unavailable")


async def test_every_invalid_field_of_a_creation_is_answered_at_once(user_client: UserClient) -> None:
    body = {"hostname": "Not_A_Hostname!", "vmid": 5, "cores": "many", "tags": ["ok", 3], "surprise": True}
    response = await user_client.http.post("/api/containers", json=body)
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["detail"] == "5 fields are invalid: hostname, vmid, cores, tags[1], surprise"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [
        ("hostname", "format"),
        ("vmid", "too_small"),
        ("cores", "type"),
        ("tags[1]", "type"),
        ("surprise", "unknown_field"),
    ]
    hostname = problem["errors"][0]["message"]
    assert hostname == "Use letters, digits and hyphens only, starting and ending with a letter or digit."
    # The same body through preflight and an update-like endpoint answers the same way.
    preflight = await user_client.http.post("/api/containers/preflight", json=body)
    assert assert_problem(preflight, 422, "validation_failed")["errors"] == problem["errors"]


async def test_query_parameter_errors_are_worded_for_people(user_client: UserClient) -> None:
    response = await user_client.http.get("/api/operations", params={"status": "done", "limit": "many"})
    problem = assert_problem(response, 422, "validation_failed")
    messages = {e["field"]: (e["code"], e["message"]) for e in problem["errors"]}
    assert messages["status"] == ("not_allowed", "Must be one of: queued, running, succeeded, failed, cancelled.")
    assert problem["detail"].startswith(f"{len(problem['errors'])} field")
