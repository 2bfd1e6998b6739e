"""Database engine and advanced-alchemy configuration shared by the API, the worker and the CLI.

PostgreSQL through psycopg 3 (`postgresql+psycopg://`) in production, SQLite through aiosqlite
(`sqlite+aiosqlite://`) in the embedded mode. Each process (and each event loop) builds its own engine.
"""

from pathlib import Path
from typing import Any

from advanced_alchemy.config import AsyncSessionConfig, SQLAlchemyAsyncConfig
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; on SQLite every connection enforces foreign keys, uses WAL and waits on locks."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


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
