"""`infrahaus api`: the production API server (uvicorn, several worker processes) against PostgreSQL and Redis."""

import argparse
import os
import sys
import tempfile

import uvicorn

from infrahaus_domain.errors import SettingsError
from infrahaus_domain.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="server processes (default: %(default)s)")
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        help="seconds in-flight requests get to finish on SIGTERM (default: %(default)s)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies whose X-Forwarded-* headers are trusted (default: %(default)s)",
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
    uvicorn.run(
        "infrahaus_api.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.graceful_timeout,
        server_header=False,
    )
    return 0
