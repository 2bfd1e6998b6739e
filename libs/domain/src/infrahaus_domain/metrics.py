"""Prometheus metrics shared by the API and the worker. Labels stay low-cardinality: templates, not ids."""

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "infrahaus_http_requests_total", "HTTP requests served by the API", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "infrahaus_http_request_duration_seconds",
    "API request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPERATIONS = Counter("infrahaus_operations_total", "Operations that reached a terminal state", ["kind", "outcome"])
OPERATION_DURATION = Histogram(
    "infrahaus_operation_duration_seconds",
    "Time from an operation's start to its terminal state",
    ["kind", "outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
PROXMOX_LATENCY = Histogram(
    "infrahaus_proxmox_request_duration_seconds",
    "Proxmox VE API call latency",
    ["method", "endpoint", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# One process samples it (the worker's metrics server); "mostrecent" keeps the pid label out in multiprocess mode.
QUEUE_DEPTH = Gauge(
    "infrahaus_queue_depth", "Messages waiting in a worker queue", ["queue"], multiprocess_mode="mostrecent"
)

_ENDPOINT_RULES = [
    (re.compile(r"/tasks/UPID:[^/]+"), "/tasks/{upid}"),
    (re.compile(r"/nodes/[^/]+"), "/nodes/{node}"),
    (re.compile(r"/(lxc|qemu)/\d+"), r"/\1/{vmid}"),
    (re.compile(r"/storage/[^/]+"), "/storage/{storage}"),
]


def proxmox_endpoint(path: str) -> str:
    """Collapse a concrete Proxmox API path to its template (``/nodes/{node}/lxc/{vmid}/status/start``)."""
    path = path.split("?", 1)[0]
    if path.startswith("/api2/json"):
        path = path[len("/api2/json") :]
    for pattern, replacement in _ENDPOINT_RULES:
        path = pattern.sub(replacement, path)
    return path or "/"


def observe_proxmox_call(method: str, path: str, status: int | str, seconds: float) -> None:
    """Record one Proxmox call; ``status`` is the HTTP status or an error class name for failed connections."""
    PROXMOX_LATENCY.labels(method.upper(), proxmox_endpoint(path), str(status)).observe(seconds)


async def _stamp_request(request: httpx.Request) -> None:
    request.extensions["infrahaus_started"] = time.perf_counter()


async def _observe_response(response: httpx.Response) -> None:
    started = response.request.extensions.get("infrahaus_started")
    if started is not None:
        observe_proxmox_call(
            response.request.method, response.request.url.path, response.status_code, time.perf_counter() - started
        )


def proxmox_event_hooks() -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
    """httpx event hooks for a `ProxmoxClient` that record every call's latency by endpoint template and status."""
    return {"request": [_stamp_request], "response": [_observe_response]}
