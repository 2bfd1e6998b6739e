"""Authorization matrix over every route under /api, enumerated from the app so new routes are covered."""

import uuid
from collections.abc import Iterator

import httpx
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from tests.fixtures.api import assert_problem

# The only operations under /api that answer without credentials.
PUBLIC = {("POST", "/api/auth/login")}

_SAMPLES = {int: "101", uuid.UUID: "01a20000-0000-7000-8000-000000000000"}


def api_operations(app: Litestar) -> Iterator[tuple[str, str, str, HTTPRouteHandler]]:
    """(method, route template, concrete path, handler) for every HTTP operation under /api."""
    for route in app.routes:
        if (
            not isinstance(route, HTTPRoute)
            or not route.path.startswith("/api/")
            or route.path.startswith("/api/schema")
        ):
            continue
        path = route.path_format
        for param in route.path_parameters.values():
            path = path.replace("{" + param.name + "}", _SAMPLES.get(param.type, "sample"))
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method not in {"HEAD", "OPTIONS"}:
                    yield method, route.path_format, path, handler


def test_the_matrix_sees_the_routes(app: Litestar) -> None:
    operations = {(m, template) for m, template, _, _ in api_operations(app)}
    assert {
        ("POST", "/api/auth/login"),
        ("GET", "/api/auth/me"),
        ("DELETE", "/api/auth/tokens/{token_id}"),
    } <= operations


def test_only_login_is_public(app: Litestar) -> None:
    public = {(m, template) for m, template, _, h in api_operations(app) if h.opt.get("exclude_from_auth")}
    assert public == PUBLIC


async def test_every_protected_route_answers_401_without_credentials(app: Litestar, client: httpx.AsyncClient) -> None:
    checked = 0
    for method, template, path, _ in api_operations(app):
        if (method, template) in PUBLIC:
            continue
        for headers in (
            {},
            {"Authorization": "Bearer ihs_0000000000000000_invalid"},
            {"Cookie": "infrahaus_session=x"},
        ):
            response = await client.request(method, path, headers=headers, json={} if method != "GET" else None)
            assert_problem(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)
            assert "set-cookie" not in response.headers, (method, path)
        checked += 1
    assert checked >= 4


async def test_options_allow_lists_exactly_the_served_methods(app: Litestar, client: httpx.AsyncClient) -> None:
    served: dict[str, set[str]] = {}
    paths: dict[str, str] = {}
    for method, template, path, _ in api_operations(app):
        served.setdefault(template, {"OPTIONS"}).add(method)
        paths[template] = path
    for template, methods in served.items():
        response = await client.options(paths[template])
        assert response.status_code == 204, (template, response.status_code)
        assert set(response.headers["allow"].split(", ")) == methods, template
