"""`create_app(settings)`: the Litestar application, its route list and plugins."""

from typing import Any

import dramatiq
import msgspec
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Request, Router
from litestar.config.cors import CORSConfig
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.routes import HTTPRoute
from litestar.types import ControllerRouterHandler

from infrahaus_api.auth import AuthMiddleware
from infrahaus_api.batches.controller import BatchController
from infrahaus_api.buckets.controller import PackageBucketController
from infrahaus_api.containers.controller import ContainerController
from infrahaus_api.containers.read_controller import ContainerReadController
from infrahaus_api.day_two.controller import DayTwoController
from infrahaus_api.db import request_session_config
from infrahaus_api.deps import dependencies
from infrahaus_api.errors import PROBLEM_RESPONSES, UnsupportedMediaType, exception_to_problem
from infrahaus_api.etag import NOT_MODIFIED, etag_middleware
from infrahaus_api.events.controller import EventStreamController
from infrahaus_api.health import live, ready
from infrahaus_api.nodes.controller import NodeController
from infrahaus_api.observability import metrics, request_context_middleware
from infrahaus_api.openapi import StrictStructSchemaPlugin, openapi_config
from infrahaus_api.operations.controller import OperationController
from infrahaus_api.resources import build_resources
from infrahaus_api.templates.controller import TemplateController
from infrahaus_api.users.controller import AuthController
from infrahaus_api.validation import check, humanize
from infrahaus_api.vmids.controller import VmidController
from infrahaus_api.webhooks.controller import WebhookController
from infrahaus_domain.errors import FieldError, SettingsError, ValidationFailed
from infrahaus_domain.events.logbuffer import LogStore
from infrahaus_domain.nodes.list_cache import node_list_watch
from infrahaus_domain.settings import Settings

# Every controller under /api, one line each.
API_ROUTES: list[ControllerRouterHandler] = [
    AuthController,
    TemplateController,
    PackageBucketController,
    NodeController,
    VmidController,
    ContainerController,
    ContainerReadController,
    DayTwoController,
    BatchController,
    OperationController,
    EventStreamController,
    WebhookController,
]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def create_app(
    settings: Settings, *, broker: dramatiq.Broker | None = None, log_store: LogStore | None = None
) -> Litestar:
    """Build the API for `settings`; nothing is read from the environment here.

    `broker` and `log_store` are injected by the embedded mode (shared with its in-process worker) and by tests.
    Handlers reach the process's resources only through dependencies (`infrahaus_api.deps`); `app.state.resources`
    is the same object, for the composition root and tests.
    """
    settings.sessions.check()
    resources = build_resources(settings, broker=broker, log_store=log_store)
    sqlalchemy = request_session_config(resources.engine, node_list_watch(resources.ports.invalidation))
    api = Router(
        path="/api",
        route_handlers=API_ROUTES,
        middleware=[DefineMiddleware(AuthMiddleware, resources=resources)],
        before_request=_check_json_body,
    )
    app = Litestar(
        route_handlers=[api, live, ready, metrics],
        middleware=[request_context_middleware, etag_middleware],
        plugins=[SQLAlchemyPlugin(config=sqlalchemy), StrictStructSchemaPlugin()],
        dependencies=dependencies(resources),
        exception_handlers={Exception: exception_to_problem},
        openapi_config=openapi_config(docs_page=settings.http.docs_page),
        cors_config=_cors(settings),
        request_max_body_size=settings.http.max_request_body_bytes,
        # Registered so the app's lifespan closes the session store's Redis client.
        stores={"sessions": resources.session_store},
        on_shutdown=[resources.close],
        # The process configured logging already (`configure_logging`: JSON or text, redacted, with ids); Litestar's
        # default config would replace the root handlers with its own plain format.
        logging_config=None,
        debug=False,
    )
    app.state.resources = resources
    _document_problems(app)
    _fix_options_allow(app)
    _resolve_dependencies_one_by_one(app)
    return app


def _cors(settings: Settings) -> CORSConfig | None:
    if not settings.http.cors_origins:
        return None
    if "*" in settings.http.cors_origins:
        # Settings read from the environment refuse it already; settings built in code must not slip past.
        raise SettingsError("INFRAHAUS_CORS_ORIGINS", "'*' is not allowed (the API allows credentials)")
    return CORSConfig(
        allow_origins=list(settings.http.cors_origins),
        allow_credentials=True,
        allow_headers=["Content-Type", "Authorization", "X-CSRF-Token", "Idempotency-Key", "Last-Event-ID"],
        # What a page on another origin may read: where a 202's operation lives, when to retry, the ETag to send
        # back in If-None-Match, and the request id to quote in a bug report.
        expose_headers=["Location", "Retry-After", "ETag", "X-Request-ID"],
    )


async def _check_json_body(request: Request[Any, Any, Any]) -> None:
    """415 for a body that is not JSON on handlers that read one (a form post never reaches a handler); 422 listing
    every invalid field for a JSON body that does not fit the handler's struct (the decoder stops at the first)."""
    if request.method not in _BODY_METHODS:
        return
    parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return
    # An empty body is fine where the body is optional (e.g. shutdown without options); required ones fail later.
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("Send the body as JSON with `Content-Type: application/json`.")
    body_type = parameter.annotation
    try:
        raw = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        return  # malformed JSON: answered by the decoder's own error path
    except RecursionError:
        # Litestar's decoder would meet the same limit and answer 500.
        raise ValidationFailed(
            [FieldError(field="body", message="nested too deeply")], "The request body is not valid JSON."
        ) from None
    except UnicodeDecodeError:
        raise ValidationFailed(
            [FieldError(field="body", message="not UTF-8")], "The request body is not valid JSON."
        ) from None
    if raw is None and parameter.is_optional:
        return
    try:
        # The same conversion Litestar runs next; a body that passes costs one more conversion, nothing else.
        msgspec.convert(raw, body_type, strict=False)
    except msgspec.ValidationError as exc:
        errors = check(raw, body_type) or [humanize(str(exc), body_type)]
        raise ValidationFailed(errors) from None


def _fix_options_allow(app: Litestar) -> None:
    # Litestar 2.25 copies routes when a router is mounted, but the generated OPTIONS handler keeps answering
    # `Allow` from the route it was first built for, which can miss methods (GET next to POST on one path).
    # Point each one at its final route so `Allow` lists exactly the methods served.
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = handler.fn
            if getattr(fn, "__name__", "") == "options_handler" and fn.__code__.co_freevars == ("self",):
                fn.__closure__[0].cell_contents = route  # type: ignore[index]


def _resolve_dependencies_one_by_one(app: Litestar) -> None:
    # Litestar resolves the dependencies of one depth concurrently, in an anyio task group: two task spawns for a
    # handler asking for `current_user` and a service. Ours are quick and mostly synchronous (only the database
    # session is async, and it does no I/O when provided), so resolving them one by one in dependency order
    # gives the same values for less work.
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for _handler, model in route.route_handler_map.values():
            if any(len(batch) > 1 for batch in model.dependency_batches):
                model.dependency_batches = [
                    {dependency} for batch in model.dependency_batches for dependency in sorted(batch, key=_key)
                ]


def _key(dependency: Any) -> str:
    return str(dependency.key)


def _document_problems(app: Litestar) -> None:
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler):
                handler.responses = {**PROBLEM_RESPONSES, **(handler.responses or {})}
                if handler.opt.get("etag"):
                    handler.responses[304] = NOT_MODIFIED
