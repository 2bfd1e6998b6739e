"""Request ids, one structured access line per request, HTTP metrics, and the `/metrics` endpoint."""

import hmac
import logging
import os
import re
import time
import uuid
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from infrahaus_domain.logs import log_context
from infrahaus_domain.metrics import HTTP_LATENCY, HTTP_REQUESTS
from infrahaus_domain.settings import Settings

logger = logging.getLogger("infrahaus.api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    """Bind a request id (the caller's `X-Request-ID` when well-formed), echo it, time and count the request.

    The response carries `Server-Timing: app;dur=<ms>` (time until the response head was sent).
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Time to the response head: lets a load test read server-side latency without the client's.
                timing = f"app;dur={(time.perf_counter() - started) * 1000:.3f}".encode()
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", timing),
                ]
            await send(message)

        with log_context(request_id=request_id):
            try:
                await app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("path_template") or "unmatched"
                method = scope["method"]
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_LATENCY.labels(method, route).observe(elapsed)
                logger.info(
                    "%s %s %s",
                    method,
                    route,
                    status,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2), "route": route},
                )

    return middleware


# Litestar appends "; charset=utf-8" to a text media type itself; given Prometheus's own value (which already names the
# charset) the header would carry it twice.
_MEDIA_TYPE = "; ".join(p.strip() for p in CONTENT_TYPE_LATEST.split(";") if not p.strip().startswith("charset="))


def metrics_registry() -> CollectorRegistry:
    """What `/metrics` serves: with several server processes, their shared multiprocess directory aggregated."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


@get("/metrics", operation_id="getMetrics", include_in_schema=False, exclude_from_auth=True, sync_to_thread=False)
def metrics(request: Request[Any, Any, Any], settings: Settings) -> Response[bytes]:
    """Prometheus exposition on the API port, only for a scraper with `INFRAHAUS_METRICS_TOKEN` as bearer token.

    Without a token configured it is not served here (404); `infrahaus api --metrics-port` serves it on a port of
    its own that the ingress does not route.
    """
    expected = settings.http.metrics_token
    if expected is None:
        raise NotFoundException()
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), expected.encode()):
        raise NotAuthorizedException(
            "Send the metrics token as `Authorization: Bearer <INFRAHAUS_METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(generate_latest(metrics_registry()), media_type=_MEDIA_TYPE)
