"""Read schemas from database rows: `msgspec.convert(row, Schema, from_attributes=True)`, field by field name.

`to_read(row, Schema, **extra)` adds what the row does not hold itself (counts, a renamed or computed field):
those names win over the row's attributes. Nested structs are read from relationships the same way.
"""

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class _Overlay:
    """The row's attributes with some names answered from `extra` instead."""

    __slots__ = ("_extra", "_row")

    def __init__(self, row: object, extra: dict[str, Any]) -> None:
        self._row = row
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        if name in self._extra:
            return self._extra[name]
        return getattr(self._row, name)


def to_read(row: object, schema: type[T], **extra: Any) -> T:
    """`row` as `schema` (matching attribute names), with `extra` fields taking precedence."""
    return msgspec.convert(_Overlay(row, extra) if extra else row, schema, from_attributes=True)
