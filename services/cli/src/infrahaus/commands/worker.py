"""`infrahaus worker`: production worker processes (dramatiq over Redis).

The process replaces itself with dramatiq's own supervisor (``exec``), so a process manager
(systemd, Kubernetes) sees one long-lived PID, signals reach dramatiq directly, and a dead child
takes the group down for the manager to restart.
"""

import argparse
import os
import sys
from collections.abc import MutableMapping

from infrahaus_domain.errors import SettingsError
from infrahaus_domain.settings import Settings
from infrahaus_worker.observability import (
    DEFAULT_METRICS_PORT,
    METRICS_HOST_ENV,
    METRICS_PORT_ENV,
    prepare_multiprocess_dir,
)
from infrahaus_worker.shutdown import DEFAULT_DRAIN_TIMEOUT, DRAIN_TIMEOUT_ENV

QUEUES = ("containers", "lifecycle", "maintenance")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per process (default: INFRAHAUS_WORKER_CONCURRENCY)"
    )
    parser.add_argument(
        "--queues", nargs="+", choices=QUEUES, default=list(QUEUES), help="queues to consume (default: all)"
    )
    add_operations_arguments(parser)


def add_operations_arguments(parser: argparse.ArgumentParser) -> None:
    """Metrics endpoint and graceful shutdown options."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="Prometheus /metrics of all worker processes, 0 = off (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-host",
        default="0.0.0.0",  # noqa: S104 - scraped from outside the pod/host
        help="address of the metrics endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT,
        help="seconds running operations get to finish on SIGTERM before they are handed back (default: %(default)s)",
    )


def operations_environment(args: argparse.Namespace, environ: MutableMapping[str, str]) -> None:
    """What the dramatiq processes read at start: metrics address, multiprocess directory, drain timeout."""
    environ[DRAIN_TIMEOUT_ENV] = str(args.drain_timeout)
    if args.metrics_port:
        environ[METRICS_PORT_ENV] = str(args.metrics_port)
        environ[METRICS_HOST_ENV] = args.metrics_host
        prepare_multiprocess_dir(environ)


def dramatiq_argv(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The dramatiq command line for these options."""
    argv = [sys.executable, "-m", "dramatiq", "infrahaus_worker.main"]
    argv += ["--processes", str(args.processes or os.cpu_count() or 1)]
    argv += ["--threads", str(args.threads or settings.worker.concurrency)]
    argv += ["--queues", *args.queues]
    # Our JSON logging instead of dramatiq's text lines; dramatiq waits past the drain timeout so a handed-back
    # message is requeued before the process exits.
    argv += ["--skip-logging", "--worker-shutdown-timeout", str(int((args.drain_timeout + 15) * 1000))]
    if args.metrics_port:
        argv += ["--fork-function", "infrahaus_worker.observability:serve_metrics"]
    return argv


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
        if settings.redis.url is None:
            raise SettingsError("INFRAHAUS_REDIS_URL", "the worker processes need Redis")
    except SettingsError as exc:
        print(f"infrahaus worker: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    operations_environment(args, os.environ)
    argv = dramatiq_argv(args, settings)
    # Replaces this process; never returns.
    os.execv(argv[0], argv)  # noqa: S606 - our own interpreter and module, no shell
