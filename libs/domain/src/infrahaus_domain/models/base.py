"""Shared model base: every table has a UUIDv7 `id` and UTC `created_at`/`updated_at` (advanced-alchemy)."""

from advanced_alchemy.base import UUIDv7AuditBase, orm_registry

metadata = orm_registry.metadata

__all__ = ["UUIDv7AuditBase", "metadata"]
