"""Request hardening over every route, beyond the single-route cases of tests/integration/api/.

CORS preflights (closed by default, configured through `INFRAHAUS_CORS_ORIGINS`), the body size limit (also for a
chunked body that announces no length), `Content-Type` on every operation that reads a JSON body, and CSRF on every
unsafe route under cookie authentication. Routes are enumerated from the app, so new ones are covered.
"""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from infrahaus_api.app import create_app
from infrahaus_domain.settings import Settings
from tests.fixtures.api import BASE_URL, SessionClient, UserClient, assert_problem, login, running
from tests.integration.api.test_matrix import PUBLIC, api_operations

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-csrf-token"}


def body_operations(app: Litestar) -> Iterator[tuple[str, str]]:
    """(method, concrete path) of every operation under /api whose handler reads a JSON body."""
    for method, _, path, handler in api_operations(app):
        if method in {"POST", "PUT", "PATCH"} and _reads_body(handler):
            yield method, path


def _reads_body(handler: HTTPRouteHandler) -> bool:
    return "data" in handler.parsed_fn_signature.parameters


async def test_preflight_is_refused_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/auth/tokens", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert "access-control-allow-headers" not in response.headers


def test_cors_origins_come_from_the_environment(settings: Settings) -> None:
    configured = Settings.from_env(
        {
            "INFRAHAUS_DATABASE_URL": settings.database.url,
            "INFRAHAUS_CORS_ORIGINS": "https://ui.example,https://admin.example",
        }
    )
    assert configured.http.cors_origins == ("https://ui.example", "https://admin.example")


async def test_configured_origin_only_passes_preflight(settings: Settings) -> None:
    app = create_app(settings.replace(http={"cors_origins": ("https://ui.example",)}))
    # A plain client: Litestar answers a refused preflight itself with a text/plain 400 (a browser protocol answer,
    # never readable by the page), not with a problem document.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with running(app), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        allowed = await http.options("/api/containers", headers={"Origin": "https://ui.example", **PREFLIGHT})
        assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
        assert "x-csrf-token" in allowed.headers["access-control-allow-headers"].lower()
        for origin in ("https://evil.example", "https://ui.example.evil.example", "null", "http://ui.example"):
            refused = await http.options("/api/containers", headers={"Origin": origin, **PREFLIGHT})
            assert refused.status_code >= 400, origin
            assert "access-control-allow-origin" not in refused.headers, origin
            simple = await http.get("/health/live", headers={"Origin": origin})
            assert "access-control-allow-origin" not in simple.headers, origin


async def test_every_json_operation_refuses_an_oversized_body(
    app: Litestar, session_client: SessionClient, settings: Settings
) -> None:
    # A session may call every operation (a bearer token may not create tokens).
    user_client = session_client
    huge = b'{"name": "' + b"x" * (settings.http.max_request_body_bytes + 1) + b'"}'
    checked = 0
    for method, path in body_operations(app):
        response = await user_client.http.request(
            method, path, content=huge, headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413, "payload_too_large")
        checked += 1
    assert checked >= 10


async def test_a_chunked_body_without_length_is_cut_at_the_limit(
    session_client: SessionClient, settings: Settings
) -> None:
    user_client = session_client

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(settings.http.max_request_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = await user_client.http.post(
        "/api/auth/tokens", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")
    tokens = (await user_client.http.get("/api/auth/tokens")).json()["items"]
    assert tokens == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
async def test_every_json_operation_enforces_its_content_type(
    app: Litestar, session_client: SessionClient, content_type: str
) -> None:
    user_client = session_client
    checked = 0
    for method, path in body_operations(app):
        response = await user_client.http.request(
            method, path, content=b'{"name": "x"}', headers={"Content-Type": content_type}
        )
        assert_problem(response, 415, "unsupported_media_type")
        checked += 1
    assert checked >= 10


@pytest.mark.usefixtures("sim_node")
async def test_every_unsafe_route_refuses_a_cookie_request_without_the_csrf_token(
    app: Litestar, client: httpx.AsyncClient
) -> None:
    await login(client)
    checked = 0
    for method, template, path, _ in api_operations(app):
        if method not in {"POST", "PUT", "PATCH", "DELETE"} or (method, template) in PUBLIC:
            continue
        # What a cross-site page can send: a form post carrying the cookie, and a JSON body without the header.
        form = await client.request(
            method,
            path,
            content=b"name=x",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
        )
        assert_problem(form, 403, "csrf_failed")
        plain = await client.request(method, path, json={}, headers={"Origin": "https://evil.example"})
        assert_problem(plain, 403, "csrf_failed")
        checked += 1
    assert checked >= 15
    assert (await client.get("/api/auth/tokens")).json()["items"] == []


PATHOLOGICAL: list[tuple[str, bytes]] = [
    ("deeply nested arrays", b"[" * 100_000 + b"]" * 100_000),
    ("deeply nested objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("nesting inside a field", b'{"name": "x", "description": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("a huge integer", b'{"name": "x", "vmid": ' + b"9" * 100_000 + b"}"),
    ("a huge float", b'{"name": "x", "cores": 1' + b"0" * 400 + b".5e999999}"),
    ("NaN", b'{"name": "x", "cores": NaN}'),
    ("invalid UTF-8", b'{"name": "\xff\xfe\xfa"}'),
    ("a lone surrogate", b'{"name": "\\ud800", "hostname": "\\udfff"}'),
    ("a NUL character", b'{"name": "a\\u0000b", "hostname": "a\\u0000b"}'),
    ("truncated", b'{"name": "x"'),
    ("a bare value", b'"just a string"'),
    ("many keys", b"{" + b",".join(b'"k%d": 1' % i for i in range(50_000)) + b"}"),
    ("duplicate keys", b'{"name": "a", "name": "b"}'),
]


@pytest.mark.parametrize(("what", "body"), PATHOLOGICAL, ids=[what for what, _ in PATHOLOGICAL])
async def test_pathological_json_is_a_client_error_on_every_operation(
    app: Litestar, user_client: UserClient, what: str, body: bytes
) -> None:
    checked = 0
    for method, path in body_operations(app):
        response = await user_client.http.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code < 500, (what, method, path, response.status_code, response.text[:300])
        checked += 1
    assert checked >= 10
