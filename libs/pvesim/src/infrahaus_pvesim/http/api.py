"""`NodeApi`: one node's aiohttp application and the request plumbing every resource shares.

Each request is delayed by the node's latency, subject to injected faults, matched against the PVE schema (an
unknown path or method is 501, a parameter outside the schema is 400), authenticated, routed to the handler of
its resource module, and recorded in ``requests``.
"""

import asyncio
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from infrahaus_pvesim.access import AccessControl, AccessError, Principal
from infrahaus_pvesim.config import SimulatorConfig
from infrahaus_pvesim.faults import NodeFaults
from infrahaus_pvesim.http.access import AccessHandlers
from infrahaus_pvesim.http.cluster import ClusterHandlers
from infrahaus_pvesim.http.common import MIB, ApiError, Ctx, ResourceHandlers, Routes, WithTotal, param_error
from infrahaus_pvesim.http.lxc import LxcHandlers
from infrahaus_pvesim.http.nodes import NodesHandlers
from infrahaus_pvesim.http.snapshot import SnapshotHandlers
from infrahaus_pvesim.http.storage import StorageHandlers
from infrahaus_pvesim.http.tasks import TasksHandlers
from infrahaus_pvesim.schema import API_PREFIX, UnknownPathError, match_path, validate_params
from infrahaus_pvesim.state import SimNode
from infrahaus_pvesim.tasks import TaskRunner

PVE_VERSION = {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}
# The resource modules, named like the client's (infrahaus_proxmox.<name>); a new one is added here.
RESOURCES: tuple[type[ResourceHandlers], ...] = (
    AccessHandlers,
    NodesHandlers,
    StorageHandlers,
    ClusterHandlers,
    LxcHandlers,
    SnapshotHandlers,
    TasksHandlers,
)
# Keys whose values never go into the request log.
_SECRET_PARAMS = {"password", "new-password", "otp", "tfa-challenge"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the node answered (for tests: "no Proxmox request while the cache is warm")."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    auth: str | None  # "token" | "ticket" | None


@dataclass
class NodeApi:
    """Request handling for one node; `app()` builds the aiohttp application."""

    node: SimNode
    faults: NodeFaults
    access: AccessControl
    tasks: TaskRunner
    config: SimulatorConfig
    fingerprint: str
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._routes: Routes = {("GET", "/version"): self.version}
        for resource in RESOURCES:
            handlers = resource(self.node, self.faults, self.access, self.tasks, self.config, self.fingerprint)
            for key, handler in handlers.routes().items():
                if key in self._routes:
                    raise ValueError(f"{key[0]} {key[1]} is routed twice")
                self._routes[key] = handler

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * MIB)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def version(self, ctx: Ctx) -> Any:
        return dict(PVE_VERSION)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        # A blackholed node never answers, also on connections opened before the fault.
        while self.faults.blackhole and request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110 - also watches the client's transport, which has no event
            await asyncio.sleep(0.05)
        params: dict[str, list[str]] = {}
        principal: Principal | None = None
        try:
            params = await self._read_params(request)
            response = await self._dispatch(request, params)
            principal = response[1]
            status, body, reason = 200, {"data": response[0]}, None
            if isinstance(response[0], WithTotal):
                body = {"data": response[0].data, "total": response[0].total}
        except ApiError as exc:
            status, reason = exc.status, exc.message
            body = {"data": None, "message": f"{exc.message}\n"}
            if exc.errors is not None:
                body["errors"] = exc.errors
        except Exception as exc:  # pveproxy turns any die() into a 500 with the message as reason phrase
            message = " ".join(str(exc).split()) or type(exc).__name__
            status, reason, body = 500, message, {"data": None, "message": f"{message}\n"}
        # Every answer takes at least the node's latency, errors included; pveproxy holds every 401 until
        # 3 s after the request began (pve-http-server AnyEvent.pm handle_api2_request).
        floor = max(self.faults.latency, self.config.auth_failure_delay if status == 401 else 0.0)
        remaining = floor - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        flat = {k: ("********" if k in _SECRET_PARAMS else v[-1]) for k, v in params.items()}
        auth_kind = principal.kind if principal is not None else self._auth_kind(request)
        self.requests.append(RecordedRequest(request.method, request.path, flat, status, auth_kind))
        # The proxy's pseudo statuses come from AnyEvent::HTTP with an empty body.
        text = "" if 595 <= status <= 599 else json.dumps(body)
        return web.Response(
            status=status,
            reason=reason,
            text=text,
            content_type="application/json",
            charset="utf-8",
            headers={"Server": "pve-api-daemon/3.0", "Cache-Control": "max-age=0", "Pragma": "no-cache"},
        )

    @staticmethod
    def _auth_kind(request: web.Request) -> str | None:
        if request.headers.get("Authorization", "").startswith("PVEAPIToken"):
            return "token"
        return "ticket" if "PVEAuthCookie" in request.cookies else None

    @staticmethod
    async def _read_params(request: web.Request) -> dict[str, list[str]]:
        params: dict[str, list[str]] = {}
        for key, value in request.query.items():
            params.setdefault(key, []).append(value)
        if request.method in ("POST", "PUT") and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    payload = await request.json()
                except ValueError as exc:
                    raise ApiError(400, "Parameter verification failed.", {"body": "invalid JSON"}) from exc
                if not isinstance(payload, dict):
                    raise ApiError(400, "Parameter verification failed.", {"body": "expected a JSON object"})
                for key, value in payload.items():
                    if isinstance(value, bool):
                        text = "1" if value else "0"
                    else:
                        text = value if isinstance(value, str) else json.dumps(value)
                    params.setdefault(key, []).append(text)
            else:
                form = await request.post()
                for key, field_value in form.items():
                    if isinstance(field_value, str):
                        params.setdefault(key, []).append(field_value)
        return params

    async def _dispatch(self, request: web.Request, raw: dict[str, list[str]]) -> tuple[Any, Principal | None]:
        failure = self.faults.take_http_failure(request.method, request.path)
        if failure is not None:
            raise ApiError(failure.status, failure.reason)
        if not request.path.startswith(API_PREFIX + "/") and request.path != API_PREFIX:
            raise ApiError(501, f"Method '{request.method} {request.path}' not implemented")
        try:
            route = match_path(request.method, request.path)
        except UnknownPathError as exc:
            raise ApiError(501, str(exc)) from exc
        template = route.operation.template
        principal = None
        if template != "/access/ticket":
            principal = self._authenticate(request)
        violations = validate_params(route, raw)
        if violations:
            raise param_error({v.field: v.message for v in violations})
        handler = self._routes.get((request.method, template))
        if handler is None:
            raise ApiError(501, f"Method '{request.method} {template}' not implemented")
        if "node" in route.path_params and route.path_params["node"] != self.node.name:
            # A standalone node resolves other node names to proxy to them, and fails like this.
            node = route.path_params["node"]
            raise ApiError(
                500,
                f"hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known",
            )
        ctx = Ctx({k: v[-1] for k, v in raw.items()}, dict(route.path_params), principal)
        try:
            return await handler(ctx), principal
        except AccessError as exc:
            raise ApiError(exc.status, exc.message, exc.errors) from exc

    def _authenticate(self, request: web.Request) -> Principal:
        cookie = request.cookies.get("PVEAuthCookie")
        if cookie is not None:
            cookie = urllib.parse.unquote(cookie)
        try:
            return self.access.authenticate(
                request.headers.get("Authorization"), cookie, request.headers.get("CSRFPreventionToken"), request.method
            )
        except AccessError as exc:
            raise ApiError(exc.status, exc.message) from exc
