"""Database engine and advanced-alchemy configuration shared by the API, the worker and the CLI.

PostgreSQL through psycopg 3 (`postgresql+psycopg://`) in production, SQLite through aiosqlite
(`sqlite+aiosqlite://`) in the embedded mode. Each process (and each event loop) builds its own engine.
"""

import os
import stat
import time
from pathlib import Path
from typing import Any

from advanced_alchemy.config import AsyncSessionConfig, SQLAlchemyAsyncConfig
from sqlalchemy import event, exc
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

# A pooled connection idle longer than this is pinged before use; a busy one is not (a ping per checkout would
# be a round trip per request). Connections are replaced after `RECYCLE_SECONDS` whatever their use.
IDLE_PING_SECONDS = 10.0
RECYCLE_SECONDS = 1800


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; on SQLite every connection enforces foreign keys, uses WAL and waits on locks."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            _create_private(Path(database))
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=RECYCLE_SECONDS)
    dialect = engine.dialect

    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        _ping_if_idle(dialect, dbapi_connection, record)

    event.listen(engine.sync_engine, "checkin", _note_checkin)
    event.listen(engine.sync_engine, "checkout", ping_if_idle)
    return engine


def _note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dialect: Dialect, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """A connection that sat idle may have been dropped (server restart, a proxy's idle timeout): ping it, and
    let the pool replace it when the ping fails. A dropped connection that was in use recently surfaces as an
    error of that one request instead; SQLAlchemy then invalidates the whole pool, so the next requests get fresh
    connections."""
    idle_since = record.info.get("checked_in")
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
        return
    try:
        alive = dialect.do_ping(dbapi_connection)
    except Exception as error:  # any failure of the ping means the connection is gone
        raise exc.DisconnectionError(type(error).__name__) from error
    if not alive:
        raise exc.DisconnectionError("ping failed")


def _create_private(database: Path) -> None:
    """Create the SQLite file readable by its owner only (it holds sessions' users, ciphertexts, audit events);
    SQLite gives its -wal and -shm files the database file's mode. An existing file is narrowed to 0600 too."""
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(database, os.O_RDWR | os.O_CREAT, stat.S_IRUSR | stat.S_IWUSR)
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
    finally:
        os.close(fd)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # SQLite ignores foreign keys unless told per connection; WAL + busy_timeout let the API and
    # the in-process worker write concurrently without "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alchemy_config(engine: AsyncEngine) -> SQLAlchemyAsyncConfig:
    """advanced-alchemy config for code outside the API (worker, CLI): `Service.new(config=...)`."""
    return SQLAlchemyAsyncConfig(engine_instance=engine, session_config=AsyncSessionConfig(expire_on_commit=False))
