"""Package buckets: per-user named package groups, with list and bulk-text import."""

import uuid
from functools import partial

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import raiseload

from infrahaus_domain import allowlist as v
from infrahaus_domain.allowlist import FieldErrors, PackageManager
from infrahaus_domain.buckets.schemas import (
    BucketCreate,
    BucketPackagesAdd,
    BucketPage,
    BucketRead,
    BucketSummary,
    BucketUpdate,
    ImportResult,
)
from infrahaus_domain.errors import ConflictError, NotFoundError
from infrahaus_domain.models.templates import BucketPackage, PackageBucket
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.reads import to_read as to_read_schema
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.templates.parser import parse_package_lines
from infrahaus_domain.templates.service import NameCursor

MAX_PACKAGES_PER_REQUEST = 5000


class PackageBucketRepository(SQLAlchemyAsyncRepository[PackageBucket]):
    model_type = PackageBucket


class PackageBucketService(DomainService[PackageBucket, PackageBucketRepository]):
    repository_type = PackageBucketRepository

    async def list_page(self, user_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None) -> BucketPage:
        """The user's buckets by name."""
        query = select(PackageBucket).where(PackageBucket.owner_id == user_id)
        if cursor:
            name, last_id = decode_cursor(cursor, NameCursor)
            query = query.where(
                or_(PackageBucket.name > name, and_(PackageBucket.name == name, PackageBucket.id > last_id))
            )
        count = (
            select(func.count())
            .where(BucketPackage.bucket_id == PackageBucket.id)
            .correlate(PackageBucket)
            .scalar_subquery()
        )
        counted = query.add_columns(count).options(raiseload(PackageBucket.packages))
        result = await self.session.execute(counted.order_by(PackageBucket.name, PackageBucket.id).limit(limit + 1))
        rows = list(result.all())
        next_cursor = encode_cursor(rows[limit - 1][0].name, rows[limit - 1][0].id) if len(rows) > limit else None
        return BucketPage(items=[to_summary(*row) for row in rows[:limit]], next_cursor=next_cursor)

    async def get_owned(self, user_id: uuid.UUID, bucket_id: uuid.UUID) -> PackageBucket:
        """One of the user's buckets; another user's bucket is `NotFoundError` like a missing one."""
        bucket = await self.repository.get_one_or_none(id=bucket_id, owner_id=user_id)
        if bucket is None:
            raise NotFoundError("Package bucket not found.")
        return bucket

    async def create_bucket(self, user_id: uuid.UUID, data: BucketCreate) -> PackageBucket:
        errors = FieldErrors()
        errors.check("name", v.validate_bucket_name, data.name)
        errors.check("description", v.validate_text, data.description)
        errors.raise_if_any()
        bucket = PackageBucket(owner_id=user_id, name=data.name, description=data.description)
        await self._flush(bucket, new=True)
        return bucket

    async def update_bucket(self, user_id: uuid.UUID, bucket_id: uuid.UUID, data: BucketUpdate) -> PackageBucket:
        bucket = await self.get_owned(user_id, bucket_id)
        errors = FieldErrors()
        if isinstance(data.name, str):
            errors.check("name", v.validate_bucket_name, data.name)
        if isinstance(data.description, str):
            errors.check("description", v.validate_text, data.description)
        errors.raise_if_any()
        if isinstance(data.name, str):
            bucket.name = data.name
        if isinstance(data.description, str):
            bucket.description = data.description
        await self._flush(bucket)
        return bucket

    async def delete_bucket(self, user_id: uuid.UUID, bucket_id: uuid.UUID) -> None:
        bucket = await self.get_owned(user_id, bucket_id)
        await self.repository.delete(bucket.id)

    async def add_packages(self, user_id: uuid.UUID, bucket_id: uuid.UUID, data: BucketPackagesAdd) -> ImportResult:
        """Add packages from a list or from bulk text; duplicates (by manager and name) are skipped.

        Every entry is validated first; one invalid entry rejects the whole request with field errors
        (`packages[i].name`, or `text` naming the line).
        """
        bucket = await self.get_owned(user_id, bucket_id)
        entries = _entries(data)
        present = {(p.manager, p.name) for p in bucket.packages}
        imported = skipped = 0
        for manager, name, version in entries:
            if (manager, name) in present:
                skipped += 1
                continue
            present.add((manager, name))
            bucket.packages.append(BucketPackage(name=name, manager=manager, version=version))
            imported += 1
        await self._flush(bucket)
        return ImportResult(imported=imported, skipped=skipped)

    async def remove_package(self, user_id: uuid.UUID, bucket_id: uuid.UUID, package_id: uuid.UUID) -> None:
        bucket = await self.get_owned(user_id, bucket_id)
        package = next((p for p in bucket.packages if p.id == package_id), None)
        if package is None:
            raise NotFoundError("Package not found in this bucket.")
        bucket.packages.remove(package)
        await self.session.flush()

    async def _flush(self, bucket: PackageBucket, *, new: bool = False) -> None:
        session = self.session
        try:
            async with session.begin_nested():
                if new:
                    session.add(bucket)
                await session.flush()
        except IntegrityError as exc:
            if "bucket_packages" in str(exc.orig):
                raise ConflictError("A package was added to this bucket at the same time; retry.") from None
            raise ConflictError("You already have a package bucket with this name.") from None
        await session.refresh(bucket)


def _entries(data: BucketPackagesAdd) -> list[tuple[PackageManager, str, str | None]]:
    """Validated (manager, name, version) triples from either form of the request."""
    errors = FieldErrors()
    entries: list[tuple[PackageManager, str, str | None]] = []
    if (data.packages is None) == (data.text is None):
        errors.add("packages", "send either `packages` or `manager` with `text`")
        errors.raise_if_any()
    if data.packages is not None:
        if data.manager is not None:
            errors.add("manager", "`manager` goes with `text`; each entry of `packages` names its own")
        if len(data.packages) > MAX_PACKAGES_PER_REQUEST:
            errors.add("packages", f"at most {MAX_PACKAGES_PER_REQUEST} entries")
        for i, package in enumerate(data.packages[:MAX_PACKAGES_PER_REQUEST]):
            name = errors.check(f"packages.{i}.name", partial(v.validate_package_name, package.manager), package.name)
            version = package.version
            if version is not None:
                version = errors.check(
                    f"packages.{i}.version", partial(v.validate_package_version, package.manager), version
                )
            entries.append((package.manager, name, version))
    elif data.text is not None:
        manager = data.manager
        if manager is None:
            errors.add("manager", "required with `text`")
            errors.raise_if_any()
            return entries
        lines = parse_package_lines(data.text)
        if len(lines) > MAX_PACKAGES_PER_REQUEST:
            errors.add("text", f"at most {MAX_PACKAGES_PER_REQUEST} packages")
        for number, spec in lines[:MAX_PACKAGES_PER_REQUEST]:
            try:
                name, version = v.parse_package_spec(manager, spec)
            except v.UnsafeValueError as exc:
                errors.add("text", f"line {number}: {exc}")
                continue
            entries.append((manager, name, version))
    errors.raise_if_any()
    return entries


def to_summary(bucket: PackageBucket, package_count: int) -> BucketSummary:
    return to_read_schema(bucket, BucketSummary, package_count=package_count)


def to_read(bucket: PackageBucket) -> BucketRead:
    return to_read_schema(bucket, BucketRead)
