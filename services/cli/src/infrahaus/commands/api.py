"""`infrahaus api`: the production API server (uvicorn, several worker processes) against PostgreSQL and Redis."""

import argparse
import os
import sys
import tempfile
from typing import Any

import uvicorn

from infrahaus_domain.errors import SettingsError
from infrahaus_domain.logs import configure_logging, server_logging_config
from infrahaus_domain.settings import Settings


def default_workers() -> int:
    """One server process per CPU the process may run on (its affinity mask, which containers narrow)."""
    return max(1, len(os.sched_getaffinity(0)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="server processes (default: the number of CPUs this process may use, here %(default)s)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        help="seconds in-flight requests get to finish on SIGTERM (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus /metrics of all server processes on this port, without authentication; keep it off "
        "the ingress (default: %(default)s = off; the API port serves it only with INFRAHAUS_METRICS_TOKEN)",
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of the metrics endpoint (default: %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    # Fail fast, naming the bad setting, before any server process starts.
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"infrahaus api: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if settings.embedded:
        print(  # noqa: T201
            "infrahaus api: INFRAHAUS_REDIS_URL is required (sessions and events are shared across processes); "
            "use `infrahaus dev` for the single-process embedded mode",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each server process writes its samples here; /metrics aggregates them.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="infrahaus-metrics-")
    configure_logging(settings.logging.level, settings.logging.format)
    if args.metrics_port:
        # A thread of this supervisor process: it outlives restarts of the server processes and reads their samples.
        from prometheus_client import start_http_server

        from infrahaus_api.observability import metrics_registry

        start_http_server(args.metrics_port, args.metrics_host, registry=metrics_registry())
    uvicorn.run(
        "infrahaus_api.asgi:app_from_env",
        factory=True,
        **server_options(
            host=args.host,
            port=args.port,
            workers=args.workers,
            graceful_timeout=args.graceful_timeout,
            log_config=server_logging_config(settings.logging.level, settings.logging.format),
        ),
    )
    return 0


def server_options(
    *,
    host: str,
    port: int,
    workers: int,
    graceful_timeout: int = 30,
    log_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """uvicorn's settings for the API, also used by `make bench` for its reference servers (same settings).

    uvloop and httptools are named rather than left to "auto", so a missing one fails at start instead of
    silently falling back to the slower pure-Python loop or parser.
    """
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": "httptools",
        # uvicorn applies it in the supervisor and in each server process before the app exists: its own lines
        # (startup, bind errors, invalid requests, exceptions it catches) come out redacted, in the product's format.
        "log_config": log_config,
        "access_log": False,
        # The app reads X-Forwarded-For itself, from INFRAHAUS_TRUSTED_PROXIES only (`infrahaus_api.login_limit`);
        # uvicorn must not rewrite the peer address before it.
        "proxy_headers": False,
        "timeout_graceful_shutdown": graceful_timeout,
        "server_header": False,
    }
