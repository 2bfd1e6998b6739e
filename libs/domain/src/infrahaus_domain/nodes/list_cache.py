"""Each user's node list kept encoded in this process's memory: `GET /api/nodes` then costs no round trip.

What the list shows comes from two tables: `nodes` (every column) and `containers` (a count per node). Whoever
changes them does not have to remember this cache: every session built with `node_list_watch(invalidation)` in its
`info` (the API's and the worker's sessionmakers) notes, as it flushes, which users' lists its changes touch —
a node added, changed or removed, a container added, removed or moved to another node — and when it commits:

- drops those users' lists from every `NodeListCache` of this process at once (the next read, even the very next
  request of the same client, sees the commit);
- publishes them on the `Invalidation` port (topic `nodes.list`), so the other processes drop them within
  milliseconds. `published(session)` waits for that message to be sent; the API does before it answers, and
  the worker's units of work before they go on.

The bound (README, Production): a list is never served later than `NODE_LIST_SECONDS` after it was read from the
database, whatever happens to the messages; while a process's subscription is down it serves nothing from memory
(`LocalCache`). Only a change made outside the product's processes (SQL by hand) waits for that bound.
"""

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.schemas import NodePage
from infrahaus_domain.ports import Invalidation
from infrahaus_domain.ports.local_cache import LocalCache

logger = logging.getLogger(__name__)

NODE_LIST_TOPIC = "nodes.list"
# The bound when an invalidation is lost while the subscription looks alive, or the rows change outside the product.
NODE_LIST_SECONDS = 10.0
# Published when a bulk statement changed rows of unknown users: every list is stale.
_EVERYONE = "*"
# How long a commit waits for its invalidation message to be sent.
_SEND_WAIT = 2.0
# Pages kept per user: the first page for each `limit` a client asked for (later pages are not kept).
_PAGES_PER_USER = 8

_WATCH = "infrahaus.node_lists.invalidation"  # session.info: the process's Invalidation port
_STALE = "infrahaus.node_lists.stale"  # session.info: users whose list this transaction changed
_PUBLISHING = "infrahaus.node_lists.publishing"  # session.info: the messages being sent after the commit

# Every NodeListCache of this process: a commit in any session of the process drops the lists it changed from all
# of them at once (one process may hold several: the embedded mode's worker thread, tests with two apps).
_CACHES: "weakref.WeakSet[NodeListCache]" = weakref.WeakSet()
# Messages still being sent (a task nobody awaits must stay referenced until it ends).
_SENDING: set["asyncio.Task[None]"] = set()


class _Pages(LocalCache[Mapping[int, bytes]]):
    def _invalidated(self, key: str | None) -> None:
        super()._invalidated(None if key == _EVERYONE else key)

    def drop(self, key: str) -> None:
        """The same drop an invalidation message makes, here and now."""
        self._invalidated(key)


class NodeListCache:
    """The first page of each user's node list, msgspec-encoded, per `limit`."""

    def __init__(self, invalidation: Invalidation, *, ttl: float = NODE_LIST_SECONDS) -> None:
        self._pages = _Pages(invalidation, NODE_LIST_TOPIC, ttl=ttl)
        _CACHES.add(self)

    async def first_page(self, user_id: uuid.UUID, limit: int, read: Callable[[], Awaitable[NodePage]]) -> bytes:
        """The encoded first page of `limit` nodes, from memory or else from `read()` (then kept)."""
        key = str(user_id)
        pages = self._pages.get(key)
        if pages is not None and (body := pages.get(limit)) is not None:
            return body
        # Stamp before reading again: pages kept so far are merged only if nothing was invalidated since.
        stamp = self._pages.stamp()
        pages = self._pages.get(key) or {}
        body = msgspec.json.encode(await read())
        kept = dict(pages) if len(pages) < _PAGES_PER_USER else {}
        kept[limit] = body
        self._pages.put(key, kept, stamp)
        return body

    def drop(self, keys: set[str]) -> None:
        """Forget these users' lists here (this process; `published` tells the others)."""
        for key in keys:
            self._pages.drop(key)


def node_list_watch(invalidation: Invalidation) -> dict[str, Any]:
    """The `info` of a sessionmaker whose sessions invalidate the node lists they change (see the module)."""
    return {_WATCH: invalidation}


async def published(session: AsyncSession | Session) -> None:
    """Wait (at most 2 s) until the node-list invalidations of `session`'s commits were sent to the other processes.
    A message that cannot be sent is logged, not raised: the change is committed, and a process whose subscription
    broke drops everything it keeps when it is back."""
    info = session.info
    sending: list[asyncio.Task[None]] | None = info.pop(_PUBLISHING, None)
    if sending:
        # Bounded: a Redis that hangs must not hold an answer or a worker step (a failure is logged by `_sent`;
        # the message may still go out, and the list's bound holds either way).
        await asyncio.wait(sending, timeout=_SEND_WAIT)


def _stale(session: Session) -> set[str]:
    stale: set[str] | None = session.info.get(_STALE)
    if stale is None:
        stale = session.info[_STALE] = set()
    return stale


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _flush: UOWTransaction) -> None:
    # After the flush, `new`, `dirty` and `deleted` and attribute histories still describe what it wrote.
    if _WATCH not in session.info:
        return
    users: set[str] = set()
    for row in session.new:
        if isinstance(row, Node | Container):
            users.add(str(row.user_id))
    for row in session.deleted:
        if isinstance(row, Node | Container):
            users.add(str(row.user_id))
    for row in session.dirty:
        if isinstance(row, Node) or (isinstance(row, Container) and inspect(row).attrs.node_id.history.has_changes()):
            users.add(str(row.user_id))
    if users:
        _stale(session).update(users)


@event.listens_for(Session, "do_orm_execute")
def _note_statements(state: ORMExecuteState) -> None:
    # A bulk UPDATE/DELETE/INSERT names no rows: every user's list may be stale (rare: host key pins).
    if _WATCH not in state.session.info or state.is_select:
        return
    mapper = state.bind_mapper
    if mapper is not None and mapper.class_ in (Node, Container):
        _stale(state.session).add(_EVERYONE)


@event.listens_for(Session, "after_commit")
def _invalidate(session: Session) -> None:
    stale: set[str] | None = session.info.pop(_STALE, None)
    if not stale:
        return
    for cache in list(_CACHES):
        cache.drop(stale)
    invalidation: Invalidation = session.info[_WATCH]
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a synchronous session outside any event loop (none of the product's)
        return
    task = loop.create_task(invalidation.publish(NODE_LIST_TOPIC, *sorted(stale)))
    _SENDING.add(task)
    task.add_done_callback(_sent)
    session.info.setdefault(_PUBLISHING, []).append(task)


def _sent(task: "asyncio.Task[None]") -> None:
    _SENDING.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("node list invalidation not sent (%s)", type(error).__name__)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_STALE, None)
