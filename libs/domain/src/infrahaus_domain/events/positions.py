"""Positions of the global event stream: numbered in commit order, so `Last-Event-ID` resumes exactly.

An identity column numbers rows when they are inserted, and transactions commit in another order: a reader that
has delivered id 11 can later see id 10 commit, and a client resuming "after 11" would never get it. So an event
gets its stream position when its transaction commits instead: the session's `before_commit` hook takes the next
numbers from the one row of `event_positions` (an `UPDATE … RETURNING`, whose row lock is held until the commit)
and writes them on the transaction's events. Whoever takes numbers later commits later; a reader that has seen
position N never finds a smaller one afterwards. PostgreSQL and SQLite behave alike (SQLite has one writer anyway).
Writers hold that lock only from their commit's start to its end, after all of their other work.

After the commit, each owner of a new event is told through the event bus (`user_events_channel`): that is only a
wake-up, the streams read what is new from the database. Streams also look on their heartbeat, so a wake-up lost
with a Redis restart delays delivery by one heartbeat at most.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast
from uuid import UUID

from sqlalchemy import Table, bindparam, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from infrahaus_domain.models.containers import Event, EventPosition
from infrahaus_domain.ports import EventBus

log = logging.getLogger("infrahaus.events")

_PENDING = "infrahaus.events.pending"
_COUNTER = 1
# Tasks publishing wake-ups after a commit; kept referenced until they finish.
_WAKEUPS: set["asyncio.Task[None]"] = set()


def user_events_channel(user_id: UUID) -> str:
    """The EventBus channel that wakes a user's global streams after one of their events committed."""
    return f"user:{user_id}"


@dataclass
class _Pending:
    bus: EventBus
    event_ids: list[int] = field(default_factory=list)
    users: set[UUID] = field(default_factory=set)


def track(session: AsyncSession, event_id: int, user_id: UUID, bus: EventBus) -> None:
    """Give the flushed event `event_id` its position when `session` commits, then wake `user_id`'s streams."""
    pending = session.info.get(_PENDING)
    if not isinstance(pending, _Pending):
        pending = session.info[_PENDING] = _Pending(bus)
    pending.event_ids.append(event_id)
    pending.users.add(user_id)


@event.listens_for(Session, "before_commit")
def _assign_positions(session: Session) -> None:
    pending = session.info.get(_PENDING)
    if not isinstance(pending, _Pending) or not pending.event_ids:
        return
    ids = sorted(pending.event_ids)
    pending.event_ids.clear()
    last = _take(session, len(ids))
    first = last - len(ids) + 1
    table = _table(Event)
    session.execute(
        update(table).where(table.c.id == bindparam("event_id")).values(position=bindparam("event_position")),
        [{"event_id": ident, "event_position": first + index} for index, ident in enumerate(ids)],
    )


def _take(session: Session, count: int) -> int:
    """Reserve `count` positions; the last one reserved. The counter's row lock lasts until the commit."""
    counter = _table(EventPosition)
    step = update(counter).where(counter.c.id == _COUNTER).values(last=counter.c.last + count).returning(counter.c.last)
    last = session.execute(step).scalar()
    if last is None:
        # No counter row (a database emptied by hand): start after the largest position there is.
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        highest = select(func.coalesce(func.max(Event.position), 0)).scalar_subquery()
        session.execute(dialect.insert(counter).values(id=_COUNTER, last=highest).on_conflict_do_nothing())
        last = session.execute(step).scalar()
    assert last is not None
    return int(last)


def _table(model: type[Event | EventPosition]) -> Table:
    # Core statements on the tables: an executemany UPDATE without the ORM's bulk semantics.
    return cast(Table, model.__table__)


@event.listens_for(Session, "after_commit")
def _wake_streams(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not isinstance(pending, _Pending) or not pending.users:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a synchronous caller: streams find the events on their next heartbeat
        return
    for user_id in pending.users:
        task = loop.create_task(_publish(pending.bus, user_id))
        _WAKEUPS.add(task)
        task.add_done_callback(_WAKEUPS.discard)


async def _publish(bus: EventBus, user_id: UUID) -> None:
    try:
        await bus.publish(user_events_channel(user_id), b"")
    except Exception:  # the event is committed; its streams find it on their next heartbeat
        log.warning("waking the event streams of a user failed; they catch up on their heartbeat", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    if not session.in_transaction():
        session.info.pop(_PENDING, None)


__all__ = ["track", "user_events_channel"]
