"""Worker observability pieces: operation metrics counted at commit, the dramatiq command line for metrics and
draining, and the multiprocess directory prepared empty."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import async_sessionmaker

from infrahaus.cli import build_parser
from infrahaus.commands.worker import dramatiq_argv, operations_environment
from infrahaus_domain.db import create_engine
from infrahaus_domain.events.logbuffer import LogBuffer, MemoryLogStore
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import Operation
from infrahaus_domain.operations.schemas import OperationError
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.ports import build_ports
from infrahaus_domain.settings import DatabaseSettings, RedisSettings, Settings
from infrahaus_worker.observability import (
    METRICS_HOST_ENV,
    METRICS_PORT_ENV,
    MULTIPROC_ENV,
    install_operation_metrics,
    prepare_multiprocess_dir,
)
from infrahaus_worker.shutdown import DRAIN_TIMEOUT_ENV
from tests.fixtures.api import create_user_with_token


def _count(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("infrahaus_operations_total", {"kind": kind, "outcome": outcome}) or 0.0


def _duration_sum(kind: str, outcome: str) -> float:
    labels = {"kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("infrahaus_operation_duration_seconds_sum", labels) or 0.0


async def test_terminal_operations_are_counted_once_committed(settings: Settings) -> None:
    install_operation_metrics()
    user_id, _ = await create_user_with_token(settings, "metrics@pve")
    engine = create_engine(settings.database.url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    ports = build_ports(None, "")
    events_buffer = LogBuffer(MemoryLogStore(), ports.events)
    failed_before, failed_sum = _count("restart", "failed"), _duration_sum("restart", "failed")
    succeeded_before = _count("restart", "succeeded")
    try:
        async with sessions() as session:
            ops = [
                Operation(
                    user_id=user_id,
                    kind="restart",
                    status="running",
                    params={},
                    started_at=datetime.now(UTC) - timedelta(seconds=30),
                )
                for _ in range(2)
            ]
            session.add_all(ops)
            await session.commit()
        async with sessions() as session:
            service = OperationService(session, events=EventService(session, logbuffer=events_buffer))
            await service.fail(ops[0].id, OperationError(code="timeout", detail="too slow"))
            assert _count("restart", "failed") == failed_before  # not yet committed
            await session.commit()
        assert _count("restart", "failed") == failed_before + 1
        assert _duration_sum("restart", "failed") - failed_sum >= 29

        # A transition that is rolled back is not counted; a terminal operation is never counted twice.
        async with sessions() as session:
            service = OperationService(session, events=EventService(session, logbuffer=events_buffer))
            await service.succeed(ops[1].id, {})
            await session.rollback()
        async with sessions() as session:
            service = OperationService(session, events=EventService(session, logbuffer=events_buffer))
            await service.fail(ops[0].id, OperationError(code="timeout", detail="again"))
            await session.commit()
        assert _count("restart", "succeeded") == succeeded_before
        assert _count("restart", "failed") == failed_before + 1
    finally:
        await ports.close()
        await engine.dispose()


def test_worker_command_serves_metrics_and_bounds_the_drain(tmp_path: Path) -> None:
    args = build_parser().parse_args(["worker", "--processes", "2", "--metrics-port", "9300", "--drain-timeout", "12"])
    environ: dict[str, str] = {MULTIPROC_ENV: str(tmp_path)}
    operations_environment(args, environ)
    assert environ[METRICS_PORT_ENV] == "9300"
    assert environ[METRICS_HOST_ENV] == "0.0.0.0"  # noqa: S104
    assert environ[DRAIN_TIMEOUT_ENV] == "12.0"
    argv = dramatiq_argv(
        args,
        Settings(
            database=DatabaseSettings(url="sqlite+aiosqlite:///x.db"),
            redis=RedisSettings(url="redis://127.0.0.1:6379/0"),
        ),
    )
    assert argv[argv.index("--fork-function") + 1] == "infrahaus_worker.observability:serve_metrics"
    assert "--skip-logging" in argv
    # dramatiq waits past the drain timeout, so a handed-back message is sent again before the process ends.
    assert int(argv[argv.index("--worker-shutdown-timeout") + 1]) > 12_000

    off = build_parser().parse_args(["worker", "--metrics-port", "0"])
    environ = {}
    operations_environment(off, environ)
    assert MULTIPROC_ENV not in environ
    assert "--fork-function" not in dramatiq_argv(
        off, Settings(database=DatabaseSettings(url="sqlite+aiosqlite:///x.db"))
    )


def test_multiprocess_dir_is_emptied_or_created(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"old samples")
    (tmp_path / "keep.txt").write_text("not ours")
    environ = {MULTIPROC_ENV: str(tmp_path)}
    assert prepare_multiprocess_dir(environ) == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]

    fresh: dict[str, str] = {}
    created = Path(prepare_multiprocess_dir(fresh))
    try:
        assert created.is_dir()
        assert not list(created.iterdir())
    finally:
        created.rmdir()
