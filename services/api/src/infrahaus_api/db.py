"""The request's database session (`db_session`): read-only requests run without a transaction.

A `GET` or `HEAD` runs its statements in autocommit mode: no `BEGIN` before its first query and no `COMMIT` after
the answer, so a read that needs one query costs one round trip. Each statement still sees a consistent snapshot
of its own; a handler that needs several statements to agree with each other, or that writes while answering a
`GET` (recording that a secret was revealed, say), declares it with `opt={"transaction": True}` and gets the
ordinary transaction, committed on a 2xx answer like every other method. A read-only session that tries to write
fails loudly (`ReadOnlyRequestWrote`) instead of writing without a transaction; the test suite would see it.
"""

from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from advanced_alchemy.extensions.litestar._utils import (
    delete_aa_scope_state,
    get_aa_scope_state,
    set_aa_scope_state,
)
from advanced_alchemy.extensions.litestar.plugins.init.config.asyncio import autocommit_handler_maker
from advanced_alchemy.extensions.litestar.plugins.init.config.common import SESSION_TERMINUS_ASGI_EVENTS
from litestar.datastructures import State
from litestar.types import Message, Scope
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from infrahaus_domain.nodes.list_cache import published

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
_READ_ONLY = "read_only"


class ReadOnlyRequestWrote(RuntimeError):  # noqa: N818 - names what happened
    """A `GET`/`HEAD` handler wrote without declaring `opt={"transaction": True}`."""


class RequestSession(Session):
    """The API's sessions: those marked read-only refuse writes."""


@event.listens_for(RequestSession, "before_flush")
def _refuse_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if session.info.get(_READ_ONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlyRequestWrote("a read-only request tried to write; give its handler opt={'transaction': True}")


@event.listens_for(RequestSession, "do_orm_execute")
def _refuse_dml(state: ORMExecuteState) -> None:
    if state.session.info.get(_READ_ONLY) and not state.is_select:
        raise ReadOnlyRequestWrote("a read-only request tried to write; give its handler opt={'transaction': True}")


def request_sessionmaker(engine: AsyncEngine, info: dict[str, Any] | None = None) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=RequestSession, info=info)


def read_only_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions in autocommit mode (no BEGIN, no COMMIT) that refuse to write."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        sync_session_class=RequestSession,
        info={_READ_ONLY: True},
    )


def request_session_config(engine: AsyncEngine, info: dict[str, Any] | None = None) -> SQLAlchemyAsyncConfig:
    """advanced-alchemy's Litestar config (the request's `db_session`, committed on a 2xx answer), choosing per
    request between a transaction and autocommit. `info` goes to every transactional session (cache watches)."""
    config = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_maker=request_sessionmaker(engine, info),
        # Its default handler answers repository errors in a non-problem shape; errors.py maps them instead.
        set_default_exception_handler=False,
    )
    read_only = read_only_sessionmaker(engine)
    transactional = config.provide_session
    commit_or_rollback = autocommit_handler_maker(session_scope_key=config.session_scope_key)

    async def before_send(message: Message, scope: Scope) -> None:
        session = get_aa_scope_state(scope, config.session_scope_key)
        if session is None or not session.info.get(_READ_ONLY):
            await commit_or_rollback(message, scope)
            if session is not None:
                # What the commit changed in in-process caches reaches the other processes before the answer does.
                await published(session)
        elif message["type"] in SESSION_TERMINUS_ASGI_EVENTS:
            # Nothing to commit or roll back: hand the connection back as soon as the answer starts.
            delete_aa_scope_state(scope, config.session_scope_key)
            await session.close()

    config.before_send_handler = before_send

    def provide_session(state: State, scope: Scope) -> AsyncSession:
        if is_read_only(scope) and get_aa_scope_state(scope, config.session_scope_key) is None:
            session = read_only()
            set_aa_scope_state(scope, config.session_scope_key, session)
            return session
        return transactional(state, scope)

    # The plugin registers `config.provide_session` as the `db_session` dependency when the app is built.
    config.provide_session = provide_session  # type: ignore[method-assign]
    return config


def is_read_only(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    if scope.get("method") not in READ_ONLY_METHODS or handler is None:
        return False
    return not handler.opt.get("transaction", False)
