"""TemplateService on both databases: a failed replacement is rolled back to its savepoint, so even a caller
that commits afterwards (worker, CLI) keeps the old template; tag filters work on jsonb and SQLite JSON alike."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from infrahaus_domain import migrations
from infrahaus_domain.db import alchemy_config, create_engine
from infrahaus_domain.errors import ValidationFailed
from infrahaus_domain.templates.schemas import TemplateScriptIn, TemplateWrite
from infrahaus_domain.templates.service import TemplateService
from infrahaus_domain.users.service import UserService


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("db_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'infrahaus.db'}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    if database_url.startswith("sqlite"):
        await migrations.upgrade(engine)
    yield engine
    await engine.dispose()


async def test_failed_replace_survives_a_later_commit(engine: AsyncEngine) -> None:
    config = alchemy_config(engine)
    async with config.get_session() as session:
        user = await UserService(session=session).record_login("pve", f"u-{uuid.uuid4().hex[:6]}@pve")
        template = await TemplateService(session=session).create_custom(
            user.id,
            TemplateWrite(name="kept", tags=["a_b", "web"], scripts=[TemplateScriptIn(name="one", content="1")]),
        )
        await session.commit()
        template_id, user_id = template.id, user.id

    async with config.get_session() as session:
        broken = TemplateWrite(
            name="lost",
            scripts=[TemplateScriptIn(name="dup", content="1"), TemplateScriptIn(name="dup", content="2")],
        )
        with pytest.raises(ValidationFailed):
            await TemplateService(session=session).replace(user_id, template_id, broken)
        await session.commit()

    async with config.get_session() as session:
        service = TemplateService(session=session)
        stored = await service.get_visible(user_id, template_id)
        assert stored.name == "kept"
        assert [s.name for s in stored.scripts] == ["one"]
        assert [t.name for t in (await service.list_page(user_id, tag="a_b")).items] == ["kept"]
        assert (await service.list_page(user_id, tag="ab")).items == []
        assert (await service.list_page(user_id, tag="we")).items == []
