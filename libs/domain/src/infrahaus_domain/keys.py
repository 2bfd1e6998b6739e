"""Registry of encrypted columns and the re-encryption that `infrahaus keys rotate` runs.

A model module registers each column holding `SecretBox` tokens once, at import:

    register_encrypted_column(Node.token_secret)

`rotate_secrets` then walks every registered column and re-encrypts the values not under the active key.
"""

from dataclasses import dataclass

from sqlalchemy import Column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute

from infrahaus_domain.crypto import SecretBox

_ENCRYPTED_COLUMNS: list[Column[str]] = []


def register_encrypted_column(
    column: "InstrumentedAttribute[str] | InstrumentedAttribute[str | None] | Column[str]",
) -> None:
    """Declare that a (nullable) string column stores `SecretBox.encrypt` tokens."""
    resolved: Column[str] = column if isinstance(column, Column) else column.property.columns[0]
    if not any(c is resolved for c in _ENCRYPTED_COLUMNS):
        _ENCRYPTED_COLUMNS.append(resolved)


def unregister_encrypted_column(column: Column[str]) -> None:
    """Remove a column again (tests that register a throwaway table)."""
    _ENCRYPTED_COLUMNS[:] = [c for c in _ENCRYPTED_COLUMNS if c is not column]


def encrypted_columns() -> list[Column[str]]:
    """Every registered column, in registration order."""
    return list(_ENCRYPTED_COLUMNS)


@dataclass(frozen=True)
class RotationReport:
    """How many values were re-encrypted per `table.column`, and how many already used the active key."""

    rotated: dict[str, int]
    unchanged: int


async def rotate_secrets(conn: AsyncConnection, box: SecretBox) -> RotationReport:
    """Re-encrypt every registered secret not under the active key, in the caller's transaction."""
    rotated: dict[str, int] = {}
    unchanged = 0
    for column in _ENCRYPTED_COLUMNS:
        table = column.table
        pk = list(table.primary_key.columns)
        count = 0
        rows = (await conn.execute(select(*pk, column).where(column.is_not(None)))).all()
        pending: list[tuple[tuple[object, ...], str]] = []
        for row in rows:
            token = row[-1]
            if box.needs_rotation(token):
                pending.append((tuple(row[:-1]), box.rotate(token)))
            else:
                unchanged += 1
        for key, new_token in pending:
            condition = [c == v for c, v in zip(pk, key, strict=True)]
            await conn.execute(update(table).where(*condition).values({column.name: new_token}))
            count += 1
        rotated[f"{table.name}.{column.name}"] = count
    return RotationReport(rotated=rotated, unchanged=unchanged)
