"""A worker whose context cannot be built refuses to start instead of failing every message."""

import dramatiq
import pytest

from infrahaus_domain.settings import DatabaseSettings, Settings
from infrahaus_worker.broker import build_stub_broker
from infrahaus_worker.context import ContextBootError, WorkerContextMiddleware, set_current_context


def test_worker_without_encryption_keys_does_not_start() -> None:
    settings = Settings(database=DatabaseSettings(url="sqlite+aiosqlite:///:memory:"))  # no encryption key configured
    broker = build_stub_broker(extra=[WorkerContextMiddleware(settings)])
    worker = dramatiq.Worker(broker, worker_threads=1)
    try:
        with pytest.raises(ContextBootError, match="INFRAHAUS_ENCRYPTION_KEYS"):
            worker.start()
    finally:
        broker.emit_after("worker_shutdown", worker)
        set_current_context(None)
