"""Work that may only happen once the session's transaction has committed.

A message that announces a database change (an operation reaching its end) must not reach another process before
the change is visible there: a client told "done" reads the operation at once, possibly through another API process.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger("infrahaus.events")

_KEY = "infrahaus.after_commit"
# Tasks started after a commit; kept referenced until they finish.
_TASKS: set["asyncio.Task[None]"] = set()


def after_commit(session: AsyncSession, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` once the session's current transaction commits; forgotten when it rolls back."""
    session.info.setdefault(_KEY, []).append(action)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    actions = session.info.pop(_KEY, None)
    if not actions:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a synchronous caller: readers find the change on their next poll
        return
    for action in actions:
        task = loop.create_task(_guarded(action))
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)


async def _guarded(action: Callable[[], Awaitable[None]]) -> None:
    try:
        await action()
    except Exception:  # the change is committed; readers catch up on their heartbeat
        log.warning("a message after a commit could not be sent; readers catch up on their heartbeat", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    if not session.in_transaction():
        session.info.pop(_KEY, None)
