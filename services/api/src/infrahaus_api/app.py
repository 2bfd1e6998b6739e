"""`create_app(settings)`: the Litestar application, its route list and plugins."""

from typing import Any

import dramatiq
from advanced_alchemy.config import AsyncSessionConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar, Request, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker

from infrahaus_api.auth import AuthMiddleware, provide_auth_info, provide_current_user
from infrahaus_api.buckets.controller import PackageBucketController
from infrahaus_api.containers.controller import ContainerController
from infrahaus_api.containers.read_controller import ContainerReadController, build_inventory
from infrahaus_api.containers.resources import build_container_resources
from infrahaus_api.errors import PROBLEM_RESPONSES, UnsupportedMediaType, exception_to_problem
from infrahaus_api.health import live, ready
from infrahaus_api.idempotency import provide_idempotency
from infrahaus_api.nodes.controller import NodeController
from infrahaus_api.observability import metrics, request_context_middleware
from infrahaus_api.openapi import StrictStructSchemaPlugin, openapi_config
from infrahaus_api.operations.controller import OperationController
from infrahaus_api.resources import AppResources
from infrahaus_api.templates.controller import TemplateController
from infrahaus_api.users.controller import AuthController
from infrahaus_api.vmids.controller import VmidController
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.db import create_engine
from infrahaus_domain.events.logbuffer import LogStore
from infrahaus_domain.ports import build_ports
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
    OperationController,
]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def create_app(
    settings: Settings, *, broker: dramatiq.Broker | None = None, log_store: LogStore | None = None
) -> Litestar:
    """Build the API for `settings`; nothing is read from the environment here.

    `broker` and `log_store` are injected by the embedded mode (shared with its in-process worker) and by tests.
    """
    resources = _build_resources(settings)
    containers = build_container_resources(
        settings, resources.ports, resources.secret_box, broker=broker, log_store=log_store
    )
    inventory = build_inventory(settings, resources)
    sqlalchemy = SQLAlchemyAsyncConfig(
        engine_instance=resources.engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        # Its default handler answers repository errors in a non-problem shape; errors.py maps them instead.
        set_default_exception_handler=False,
    )
    api = Router(
        path="/api",
        route_handlers=API_ROUTES,
        middleware=[AuthMiddleware],
        before_request=_require_json_body,
    )

    async def close_resources() -> None:
        await containers.close()
        await inventory.aclose()
        await resources.ports.close()
        await resources.engine.dispose()

    app = Litestar(
        route_handlers=[api, live, ready, metrics],
        middleware=[request_context_middleware],
        plugins=[SQLAlchemyPlugin(config=sqlalchemy), StrictStructSchemaPlugin()],
        dependencies={
            "current_user": Provide(provide_current_user, sync_to_thread=False),
            "auth_info": Provide(provide_auth_info, sync_to_thread=False),
            "idempotency": Provide(provide_idempotency, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
            "secret_box": Provide(lambda: resources.secret_box, sync_to_thread=False, use_cache=True),
            "ports": Provide(lambda: resources.ports, sync_to_thread=False, use_cache=True),
        },
        exception_handlers={Exception: exception_to_problem},
        openapi_config=openapi_config(),
        cors_config=_cors(settings),
        request_max_body_size=settings.max_request_body_bytes,
        # Registered so the app's lifespan closes the session store's Redis client.
        stores={"sessions": resources.session_store},
        on_shutdown=[close_resources],
        # The process configured logging already (`configure_logging`: JSON or text, redacted, with ids); Litestar's
        # default config would replace the root handlers with its own plain format.
        logging_config=None,
        debug=False,
    )
    app.state.resources = resources
    app.state.containers = containers
    app.state.inventory = inventory
    _document_problems(app)
    _fix_options_allow(app)
    return app


def _build_resources(settings: Settings) -> AppResources:
    engine = create_engine(settings.database_url)
    store: Store
    if settings.redis_url is None:
        store = MemoryStore()
    else:
        # One client per app instance: redis-py asyncio clients belong to one event loop.
        store = RedisStore(
            Redis.from_url(settings.redis_url),
            namespace=f"{settings.redis_prefix}sessions",
            handle_client_shutdown=True,
        )
    return AppResources(
        settings=settings,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        ports=build_ports(settings.redis_url, settings.redis_prefix),
        secret_box=SecretBox(settings.encryption_keys),
        session_store=store,
    )


def _cors(settings: Settings) -> CORSConfig | None:
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_credentials=True,
        allow_headers=["Content-Type", "Authorization", "X-CSRF-Token", "Idempotency-Key", "Last-Event-ID"],
        expose_headers=["Location", "Retry-After"],
    )


async def _require_json_body(request: Request[Any, Any, Any]) -> None:
    """415 for a body that is not JSON on handlers that read one (a form post never reaches a handler)."""
    if request.method not in _BODY_METHODS or "data" not in request.route_handler.parsed_fn_signature.parameters:
        return
    # An empty body is fine where the body is optional (e.g. shutdown without options); required ones fail later.
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("Send the body as JSON with `Content-Type: application/json`.")


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


def _document_problems(app: Litestar) -> None:
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler):
                handler.responses = {**PROBLEM_RESPONSES, **(handler.responses or {})}
