"""Alembic migrations, one history for PostgreSQL and SQLite, run in the caller's transaction.

`upgrade`/`downgrade` open one transaction on the engine and hand its connection to Alembic, so on PostgreSQL
(transactional DDL) a failing migration rolls back everything it started: nothing is left half-applied.
"""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

SCRIPT_LOCATION = Path(__file__).parent


def alembic_config(script_location: Path | None = None) -> Config:
    """An Alembic config pointing at this package (or a copy of it, for tests)."""
    config = Config()
    config.set_main_option("script_location", str(script_location or SCRIPT_LOCATION))
    return config


def head_revision(script_location: Path | None = None) -> str | None:
    """The newest revision id in the history."""
    return ScriptDirectory.from_config(alembic_config(script_location)).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head", *, script_location: Path | None = None) -> None:
    """Apply migrations up to `revision` in one transaction."""
    await _run(engine, command.upgrade, revision, script_location)


async def downgrade(engine: AsyncEngine, revision: str, *, script_location: Path | None = None) -> None:
    """Revert migrations down to `revision` (`base` removes every table) in one transaction."""
    await _run(engine, command.downgrade, revision, script_location)


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at, None when no migration was ever applied."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def _run(engine: AsyncEngine, fn: Any, revision: str, script_location: Path | None) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(script_location)
        config.attributes["connection"] = connection
        fn(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
