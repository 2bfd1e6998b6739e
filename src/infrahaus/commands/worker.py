"""`infrahaus worker`: production worker processes (dramatiq over Redis).

The process replaces itself with dramatiq's own supervisor (``exec``), so a process manager
(systemd, Kubernetes) sees one long-lived PID, signals reach dramatiq directly, and a dead child
takes the group down for the manager to restart.
"""

import argparse
import os
import sys

from infrahaus_domain.errors import SettingsError
from infrahaus_domain.settings import Settings
from infrahaus_worker.pipeline.plan import Limits, PlanError

QUEUES = ("containers", "lifecycle", "maintenance")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per process (default: INFRAHAUS_WORKER_CONCURRENCY)"
    )
    parser.add_argument(
        "--queues", nargs="+", choices=QUEUES, default=list(QUEUES), help="queues to consume (default: all)"
    )


def dramatiq_argv(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The dramatiq command line for these options."""
    argv = [sys.executable, "-m", "dramatiq", "infrahaus_worker.main"]
    argv += ["--processes", str(args.processes or os.cpu_count() or 1)]
    argv += ["--threads", str(args.threads or settings.worker_concurrency)]
    argv += ["--queues", *args.queues]
    return argv


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
        if settings.redis_url is None:
            raise SettingsError("INFRAHAUS_REDIS_URL", "the worker processes need Redis")
        Limits.from_env(os.environ)
    except (SettingsError, PlanError) as exc:
        print(f"infrahaus worker: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    argv = dramatiq_argv(args, settings)
    # Replaces this process; never returns.
    os.execv(argv[0], argv)  # noqa: S606 - our own interpreter and module, no shell
