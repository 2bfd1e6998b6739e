"""One Alembic history for PostgreSQL and SQLite: up, down, up again; transactional on PostgreSQL; matches models."""

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from infrahaus.cli import main
from infrahaus_domain import migrations
from infrahaus_domain.db import create_engine
from infrahaus_domain.models import metadata
from infrahaus_domain.settings import parse_keyring
from tests.fixtures.services import pg_url_for, temporary_database


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database of its own (migrations are tested from nothing)."""
    with temporary_database("mig") as name:
        yield pg_url_for(name)


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = (
        request.getfixturevalue("fresh_pg_url")
        if request.param == "postgresql"
        else f"sqlite+aiosqlite:///{tmp_path}/t.db"
    )
    eng = create_engine(url)
    yield eng
    await eng.dispose()


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names())) - {"alembic_version"}


async def test_upgrade_downgrade_upgrade(engine: AsyncEngine) -> None:
    head = migrations.head_revision()
    model_tables = {t.name for t in metadata.sorted_tables}
    await migrations.upgrade(engine)
    assert await migrations.current(engine) == head
    assert await _tables(engine) == model_tables
    await migrations.downgrade(engine, "0001_users")
    assert await migrations.current(engine) == "0001_users"
    assert await _tables(engine) == {"users", "api_tokens"}
    await migrations.downgrade(engine, "base")
    assert await migrations.current(engine) is None
    assert await _tables(engine) == set()
    await migrations.upgrade(engine)
    assert await migrations.current(engine) == head
    assert await _tables(engine) == model_tables


async def test_sqlite_connections_enforce_foreign_keys(tmp_path: Path) -> None:
    eng = create_engine(f"sqlite+aiosqlite:///{tmp_path}/fk.db")
    try:
        async with eng.connect() as conn:
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
    finally:
        await eng.dispose()


async def test_migrations_match_the_models(fresh_pg_url: str) -> None:
    eng = create_engine(fresh_pg_url)
    try:
        await migrations.upgrade(eng)
        async with eng.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
        assert diff == [], f"models and migrations differ (write a migration): {diff}"
    finally:
        await eng.dispose()


FAILING = """
import sqlalchemy as sa
from alembic import op

revision = "9999_broken"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_applied", sa.Column("id", sa.Integer(), primary_key=True))
    op.add_column("users", sa.Column("extra", sa.Integer(), nullable=True))
    op.execute("SELECT * FROM table_that_does_not_exist")


def downgrade() -> None:
    op.drop_table("half_applied")
"""


async def test_failing_migration_leaves_nothing_half_applied_on_postgresql(fresh_pg_url: str, tmp_path: Path) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrations.SCRIPT_LOCATION, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrations.head_revision()
    (scripts / "versions" / "9999_broken.py").write_text(FAILING.format(head=head))
    eng = create_engine(fresh_pg_url)
    try:
        # From nothing: the whole upgrade is one transaction, so not even the good migrations stay.
        with pytest.raises(Exception, match="table_that_does_not_exist"):
            await migrations.upgrade(eng, script_location=scripts)
        assert await migrations.current(eng) is None
        assert await _tables(eng) == set()

        # From head: the broken step rolls back alone, head stays intact.
        await migrations.upgrade(eng)
        with pytest.raises(Exception, match="table_that_does_not_exist"):
            await migrations.upgrade(eng, script_location=scripts)
        assert await migrations.current(eng) == head
        assert "half_applied" not in await _tables(eng)
        async with eng.connect() as conn:
            columns = await conn.run_sync(lambda sync: [c["name"] for c in inspect(sync).get_columns("users")])
        assert "extra" not in columns
    finally:
        await eng.dispose()


def test_migrate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INFRAHAUS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    assert main(["migrate"]) == 0
    assert f"database at revision: {migrations.head_revision()}" in capsys.readouterr().out
    assert main(["migrate", "downgrade", "0001_users"]) == 0
    assert "database at revision: 0001_users" in capsys.readouterr().out
    assert main(["migrate", "current"]) == 0
    assert "database at revision: 0001_users" in capsys.readouterr().out
    assert main(["migrate", "downgrade"]) == 2
    assert main(["migrate", "upgrade", "head"]) == 0
    assert f"database at revision: {migrations.head_revision()}" in capsys.readouterr().out


def test_keys_generate_prints_a_usable_key_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--kid", "k2026"]) == 0
    line = capsys.readouterr().out.strip()
    (key,) = parse_keyring(line, "INFRAHAUS_ENCRYPTION_KEYS")
    assert key.kid == "k2026"
    assert len(key.key) == 32


@pytest.mark.parametrize("argv", [["migrate"], ["keys", "rotate"], ["dev", "--data-dir"]])
def test_commands_fail_fast_naming_the_bad_setting(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFRAHAUS_SESSION_IDLE_SECONDS", "soon")
    assert main([*argv, str(tmp_path)] if argv[-1] == "--data-dir" else argv) == 2
    assert "INFRAHAUS_SESSION_IDLE_SECONDS: must be an integer" in capsys.readouterr().err


async def test_existing_templates_get_revision_1_with_the_digest_a_save_computes(fresh_pg_url: str) -> None:
    """The day-two migration records each template's current content as revision 1; its digest is the one the service
    computes, so saving the template unchanged afterwards records no second revision."""
    engine = create_engine(fresh_pg_url)
    try:
        await _backfilled_revision_matches(engine)
    finally:
        await engine.dispose()


async def _backfilled_revision_matches(engine: AsyncEngine) -> None:
    from infrahaus_domain.db import alchemy_config
    from infrahaus_domain.models import Template, TemplateRevision
    from infrahaus_domain.templates.revisions import RevisionService, content_digest, content_of

    await migrations.upgrade(engine, "0006_container_status")
    template_id = "0190f1b2-0000-7000-8000-000000000001"
    now = "2026-12-01 10:00:00+00:00"
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO templates (id, name, description, tags, os_template, cores, memory_mb, swap_mb, disk_gb,"
                " storage, bridge, unprivileged, nesting, keyctl, fuse, source, owner_id, source_dir, content_hash,"
                " created_at, updated_at) VALUES (:id, 'héllo', 'd', :tags, NULL, 2, 256, 0, 4, 'local-lvm', 'vmbr0',"
                " true, false, false, false, 'filesystem', NULL, 'hello', 'h', :now, :now)"
            ),
            {"id": template_id, "tags": '["web"]', "now": now},
        )
        for table, columns, values in (
            ("template_scripts", "name, position, content, description, enabled", "'00-a', 0, 'echo ü\n', '', true"),
            (
                "template_files",
                "position, name, target_path, policy, mode, content",
                "0, 'a.conf', '/etc/a', 'replace', '0644', 'x=1\n'",
            ),
            ("template_packages", "position, name, manager, version, bucket", "0, 'curl', 'apt', NULL, 'base'"),
        ):
            await conn.execute(
                text(
                    f"INSERT INTO {table} (id, template_id, {columns}, created_at, updated_at)"  # noqa: S608 - constants
                    f" VALUES (:id, :tid, {values}, :now, :now)"
                ),
                {"id": str(uuid.uuid4()), "tid": template_id, "now": now},
            )
    await migrations.upgrade(engine)
    async with alchemy_config(engine).get_session() as session:
        template = await session.get(Template, template_id)
        assert template is not None
        assert template.revision == 1
        (revision,) = (await session.scalars(text("SELECT id FROM template_revisions"))).all()
        stored = await session.get(TemplateRevision, revision)
        assert stored is not None
        assert stored.author_kind == "migration"
        assert stored.digest == content_digest(content_of(template))
        again = await RevisionService(session=session).record(template, author="discovery")
        assert again.number == 1
