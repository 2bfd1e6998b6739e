"""`infrahaus keys rotate`: secrets written under an old key read back after rotation, now under the new key id."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, select

from infrahaus.commands.keys import rotate
from infrahaus_domain.crypto import SecretBox, generate_key, token_kid
from infrahaus_domain.db import create_engine
from infrahaus_domain.keys import encrypted_columns, register_encrypted_column, unregister_encrypted_column
from infrahaus_domain.settings import DatabaseSettings, EncryptionSettings, Settings

_meta = MetaData()
# A throwaway table standing in for any model with encrypted columns (nodes, service credentials ...).
vault = Table(
    "test_rotation_vault",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("secret", Text, nullable=True),
    Column("other_secret", Text, nullable=True),
)


@pytest.fixture
async def registered_vault(db_url: str) -> AsyncIterator[str]:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(_meta.create_all)
    register_encrypted_column(vault.c.secret)
    register_encrypted_column(vault.c.other_secret)
    try:
        yield db_url
    finally:
        unregister_encrypted_column(vault.c.secret)
        unregister_encrypted_column(vault.c.other_secret)
        async with engine.begin() as conn:
            await conn.run_sync(_meta.drop_all)
        await engine.dispose()


async def test_rotation_re_encrypts_every_registered_secret(
    registered_vault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = generate_key("old"), generate_key("new")
    before = SecretBox([old])
    plain = {1: ("token-one", None), 2: ("token-two", "ssh-key-two"), 3: (None, "pw-three")}
    engine = create_engine(registered_vault)
    try:
        async with engine.begin() as conn:
            for row_id, (a, b) in plain.items():
                await conn.execute(
                    insert(vault).values(
                        id=row_id,
                        secret=before.encrypt(a) if a else None,
                        other_secret=before.encrypt(b) if b else None,
                    )
                )

        settings = Settings(
            database=DatabaseSettings(url=registered_vault), encryption=EncryptionSettings(keys=(new, old))
        )
        assert await rotate(settings) == 0
        out = capsys.readouterr().out
        assert "test_rotation_vault.secret: 2 re-encrypted" in out
        assert "test_rotation_vault.other_secret: 2 re-encrypted" in out
        for value in ("token-one", "token-two", "ssh-key-two", "pw-three"):
            assert value not in out

        only_new = SecretBox([new])  # the old key can now be dropped
        async with engine.connect() as conn:
            rows = (await conn.execute(select(vault).order_by(vault.c.id))).all()
        for row in rows:
            for token, expected in zip((row.secret, row.other_secret), plain[row.id], strict=True):
                if expected is None:
                    assert token is None
                else:
                    assert token_kid(token) == "new"
                    assert only_new.decrypt(token) == expected

        assert await rotate(settings) == 0  # idempotent
        assert "4 already current" in capsys.readouterr().out
    finally:
        await engine.dispose()


def test_models_register_their_encrypted_columns() -> None:
    from infrahaus_domain import models  # noqa: F401 - importing the models registers their columns

    names = {f"{c.table.name}.{c.name}" for c in encrypted_columns()}
    assert "nodes.token_secret" in names
