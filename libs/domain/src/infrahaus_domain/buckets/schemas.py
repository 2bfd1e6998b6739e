"""Package buckets: request and response bodies."""

import uuid
from datetime import datetime

import msgspec

from infrahaus_domain.allowlist import PackageManager


class BucketCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str = ""


class BucketUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET


class BucketPackageIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    manager: PackageManager
    version: str | None = None


class BucketPackagesAdd(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Either `packages` (a list) or a bulk import: `manager` plus `text` with one package per line.

    In `text`, blank lines and `#` comments (whole-line or after a package) are ignored and version
    pins are kept (`flask==3.0.0`, `express@4`, `nginx=1.22*`). Packages already in the bucket or
    repeated in the request (same manager and name) are skipped.
    """

    packages: list[BucketPackageIn] | None = None
    manager: PackageManager | None = None
    text: str | None = None


class ImportResult(msgspec.Struct, kw_only=True):
    imported: int
    skipped: int


class BucketPackageRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    manager: PackageManager
    version: str | None


class BucketSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str
    package_count: int
    created_at: datetime
    updated_at: datetime


class BucketRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str
    packages: list[BucketPackageRead]
    created_at: datetime
    updated_at: datetime


class BucketPage(msgspec.Struct, kw_only=True):
    items: list[BucketSummary]
    next_cursor: str | None
