"""`infrahaus worker`: the dramatiq command line it execs, and failing fast on bad settings."""

import subprocess
import sys

import pytest

from infrahaus.cli import build_parser
from infrahaus.commands.worker import QUEUES, dramatiq_argv
from infrahaus_domain.settings import DatabaseSettings, RedisSettings, Settings, WorkerSettings


def test_dramatiq_argv_from_options() -> None:
    args = build_parser().parse_args(["worker", "--processes", "3", "--threads", "5", "--queues", "containers"])
    settings = Settings(
        database=DatabaseSettings(url="sqlite+aiosqlite:///x.db"), redis=RedisSettings(url="redis://127.0.0.1:6379/0")
    )
    argv = dramatiq_argv(args, settings)
    assert argv[:4] == [sys.executable, "-m", "dramatiq", "infrahaus_worker.main"]
    assert argv[argv.index("--processes") + 1] == "3"
    assert argv[argv.index("--threads") + 1] == "5"
    assert argv[argv.index("--queues") + 1] == "containers"


def test_threads_default_to_worker_concurrency() -> None:
    args = build_parser().parse_args(["worker", "--processes", "1"])
    settings = Settings(database=DatabaseSettings(url="sqlite+aiosqlite:///x.db"), worker=WorkerSettings(concurrency=7))
    argv = dramatiq_argv(args, settings)
    assert argv[argv.index("--threads") + 1] == "7"
    queues = argv.index("--queues") + 1
    assert argv[queues : queues + len(QUEUES)] == ["containers", "lifecycle", "maintenance"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "INFRAHAUS_REDIS_URL"),
        (
            {"INFRAHAUS_REDIS_URL": "redis://127.0.0.1:6379/0", "INFRAHAUS_WORKER_SCRIPT": "-1"},
            "INFRAHAUS_WORKER_SCRIPT",
        ),
    ],
)
def test_bad_settings_fail_fast_naming_the_variable(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infrahaus.cli", "worker"],
        env={"PATH": "/usr/bin:/bin", "INFRAHAUS_DATABASE_URL": "sqlite+aiosqlite:///x.db", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
