"""Server-side session expiry: idle timeout refreshed by use, absolute lifetime regardless of use."""

import uuid
from datetime import UTC, datetime

from litestar.stores.memory import MemoryStore

from infrahaus_api.auth import CurrentUser, SessionManager


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_session_idle_and_absolute_expiry() -> None:
    clock = _Clock()
    store = MemoryStore()
    sessions = SessionManager(store, idle_seconds=600, absolute_seconds=1800, clock=clock)
    user = CurrentUser(id=uuid.uuid4(), auth_server="pve", userid="root@pam", display_name="root@pam")

    session_id, _ = await sessions.create(user)
    clock.now += 599
    assert await sessions.load(session_id) is not None  # used: idle clock restarts
    clock.now += 599
    assert await sessions.load(session_id) is not None
    clock.now += 601
    assert await sessions.load(session_id) is None  # idle too long
    assert await store.get(session_id) is None

    session_id, data = await sessions.create(user)
    for _ in range(3):
        clock.now += 590
        assert await sessions.load(session_id) is not None
    clock.now += 100  # 1870 s after creation: past the absolute lifetime although active
    assert await sessions.load(session_id) is None
    assert sessions.expires_at(data) <= datetime.fromtimestamp(data.created_at + 1800, UTC)
