"""Templates: validation, visibility (shared filesystem templates + the caller's own), atomic child replacement."""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any, TypeVar

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import ScalarSelect, String, and_, cast, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import raiseload

from infrahaus_domain import allowlist as v
from infrahaus_domain.allowlist import FieldErrors, whole
from infrahaus_domain.errors import ConflictError, FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.models.templates import (
    BucketPackage,
    PackageBucket,
    Template,
    TemplateFile,
    TemplatePackage,
    TemplateScript,
    TemplateSource,
)
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.reads import to_read as to_read_schema
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.templates.revisions import RevisionService
from infrahaus_domain.templates.schemas import (
    TemplateFileIn,
    TemplatePackageIn,
    TemplatePage,
    TemplateRead,
    TemplateScriptIn,
    TemplateSummary,
    TemplateWrite,
)

MAX_CHILDREN = 500
MAX_TAGS = 32


class TemplateReadOnly(ConflictError):  # noqa: N818 - reads as the condition, like the other domain errors
    """A filesystem template: it changes only through its directory and `discover`."""

    code = "template_read_only"


def validate_template(data: TemplateWrite) -> TemplateWrite:
    """Check every field against its allow-list; return the normalised template or raise `ValidationFailed`.

    Normalises: tags lowercased and deduplicated, modes as four octal digits, bare pip versions as ``==x``,
    scripts ordered by (position, list order) and renumbered 0, 1, 2, ...
    """
    errors = FieldErrors()
    errors.check("name", v.validate_template_name, data.name)
    errors.check("description", v.validate_text, data.description)
    tags: list[str] = []
    if len(data.tags) > MAX_TAGS:
        errors.add("tags", f"at most {MAX_TAGS} tags")
    for i, tag in enumerate(data.tags[:MAX_TAGS]):
        normalised = errors.check(f"tags.{i}", v.validate_tag, tag).lower()
        if normalised not in tags:
            tags.append(normalised)
    if data.os_template is not None:
        errors.check("os_template", v.validate_os_template, data.os_template)
    errors.check("storage", v.validate_storage, data.storage)
    errors.check("bridge", v.validate_bridge, data.bridge)
    for field, items in (("scripts", data.scripts), ("files", data.files), ("packages", data.packages)):
        if len(items) > MAX_CHILDREN:
            errors.add(field, f"at most {MAX_CHILDREN} entries")

    scripts = []
    for i, script in enumerate(data.scripts):
        errors.check(f"scripts.{i}.name", v.validate_script_name, script.name)
        errors.check(f"scripts.{i}.content", v.validate_content, script.content)
        errors.check(f"scripts.{i}.description", v.validate_text, script.description)
        scripts.append((script.position if script.position is not None else i, i, script))
    files = []
    for i, file in enumerate(data.files):
        errors.check(f"files.{i}.name", v.validate_file_name, file.name)
        errors.check(f"files.{i}.target_path", v.validate_target_path, file.target_path)
        errors.check(f"files.{i}.content", v.validate_content, file.content)
        mode = errors.check(f"files.{i}.mode", v.validate_mode, file.mode)
        files.append(
            TemplateFileIn(
                name=file.name, target_path=file.target_path, content=file.content, policy=file.policy, mode=mode
            )
        )
    packages = []
    for i, package in enumerate(data.packages):
        errors.check(f"packages.{i}.name", partial(v.validate_package_name, package.manager), package.name)
        version = package.version
        if version is not None:
            version = errors.check(
                f"packages.{i}.version", partial(v.validate_package_version, package.manager), version
            )
        if package.bucket is not None:
            errors.check(f"packages.{i}.bucket", v.validate_label, package.bucket)
        packages.append(
            TemplatePackageIn(name=package.name, manager=package.manager, version=version, bucket=package.bucket)
        )
    errors.raise_if_any()
    ordered = [
        TemplateScriptIn(name=s.name, content=s.content, position=n, description=s.description, enabled=s.enabled)
        for n, (_, _, s) in enumerate(sorted(scripts, key=lambda item: (item[0], item[1])))
    ]
    return TemplateWrite(
        name=data.name,
        description=data.description,
        tags=tags,
        os_template=data.os_template,
        cores=data.cores,
        memory_mb=data.memory_mb,
        swap_mb=data.swap_mb,
        disk_gb=data.disk_gb,
        storage=data.storage,
        bridge=data.bridge,
        unprivileged=data.unprivileged,
        nesting=data.nesting,
        keyctl=data.keyctl,
        fuse=data.fuse,
        scripts=ordered,
        files=files,
        packages=packages,
    )


# A unique-constraint violation raised while flushing, by the table it names, as the user should read it.
_DUPLICATES = (
    ("template_scripts", "scripts", "Script names must be unique within a template."),
    ("template_files", "files", "Each file (target path and name) may appear only once."),
    ("template_packages", "packages", "Each package (manager and name) may appear only once."),
)


@contextmanager
def _integrity_as_validation(name: str) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        message = str(exc.orig)
        for table, field, text in _DUPLICATES:
            if table in message:
                raise ValidationFailed([FieldError(field=field, message=text)]) from None
        if "uq_templates_owner_id_name" in message or "templates.owner_id, templates.name" in message:
            raise ConflictError(f"You already have a template named {name!r}.") from None
        if "uq_templates_source_dir" in message or "templates.source_dir" in message:
            raise ConflictError("Another discovery run stored this template at the same time; run it again.") from None
        raise


Child = TypeVar("Child", TemplateScript, TemplateFile, TemplatePackage)
_CHILD_FIELDS: dict[type[Any], tuple[str, ...]] = {
    TemplateScript: ("name", "position", "content", "description", "enabled"),
    TemplateFile: ("position", "name", "target_path", "policy", "mode", "content"),
    TemplatePackage: ("position", "name", "manager", "version", "bucket"),
}


def _script_key(s: TemplateScript) -> tuple[str, ...]:
    return (s.name,)


def _file_key(f: TemplateFile) -> tuple[str, ...]:
    return (f.target_path, f.name)


def _package_key(p: TemplatePackage) -> tuple[str, ...]:
    return (p.manager, p.name)


def _children(data: TemplateWrite) -> tuple[list[TemplateScript], list[TemplateFile], list[TemplatePackage]]:
    scripts = [
        TemplateScript(
            name=s.name, position=s.position or 0, content=s.content, description=s.description, enabled=s.enabled
        )
        for s in data.scripts
    ]
    files = [
        TemplateFile(
            position=i, name=f.name, target_path=f.target_path, policy=f.policy, mode=f.mode, content=f.content
        )
        for i, f in enumerate(data.files)
    ]
    packages = [
        TemplatePackage(position=i, name=p.name, manager=p.manager, version=p.version, bucket=p.bucket)
        for i, p in enumerate(data.packages)
    ]
    return scripts, files, packages


def _check_unique(field: str, message: str, rows: list[Child], key: Callable[[Child], tuple[str, ...]]) -> None:
    seen: set[tuple[str, ...]] = set()
    for row in rows:
        if key(row) in seen:
            raise ValidationFailed([FieldError(field=field, message=message)])
        seen.add(key(row))


def _merge(current: list[Child], wanted: list[Child], key: Callable[[Child], tuple[str, ...]]) -> list[Child]:
    """The children after a replace: an existing row whose key (its name, or target path and name, or manager and
    name) is wanted again is kept (same id, fields updated), the others are new rows; rows no longer wanted go
    (delete-orphan). Kept ids keep clients' saved choices (a creation's `scripts: [{id, enabled}]`) valid."""
    existing = {key(row): row for row in current}
    merged: list[Child] = []
    for row in wanted:
        kept = existing.pop(key(row), None)
        if kept is None:
            merged.append(row)
            continue
        for name in _CHILD_FIELDS[type(row)]:
            if getattr(kept, name) != getattr(row, name):
                setattr(kept, name, getattr(row, name))
        merged.append(kept)
    return merged


def _set_fields(template: Template, data: TemplateWrite) -> None:
    template.name = data.name
    template.description = data.description
    template.tags = list(data.tags)
    template.os_template = data.os_template
    template.cores = data.cores
    template.memory_mb = data.memory_mb
    template.swap_mb = data.swap_mb
    template.disk_gb = data.disk_gb
    template.storage = data.storage
    template.bridge = data.bridge
    template.unprivileged = data.unprivileged
    template.nesting = data.nesting
    template.keyctl = data.keyctl
    template.fuse = data.fuse


# Lists ordered by (name, id) share this cursor position; the name goes back into a query, so it is checked as text.
NameCursor = tuple[
    Annotated[
        str,
        msgspec.Meta(
            max_length=200,
            pattern=whole(r"[^\x00-\x08\x0b-\x1f\x7f]*"),
            extra={"message": "Not a cursor from this list."},
        ),
    ],
    uuid.UUID,
]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class TemplateRepository(SQLAlchemyAsyncRepository[Template]):
    model_type = Template


class TemplateService(DomainService[Template, TemplateRepository]):
    """Templates; every change records a revision (`templates.revisions`)."""

    repository_type = TemplateRepository

    @property
    def revisions(self) -> RevisionService:
        return RevisionService(session=self.session)

    # ------------------------------------------------------------------ reads

    async def list_page(
        self,
        user_id: uuid.UUID,
        *,
        q: str | None = None,
        tag: str | None = None,
        source: TemplateSource | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TemplatePage:
        """Templates the user can see (filesystem + own custom), by name; `q` searches name and description."""
        errors = FieldErrors()
        if q:
            errors.check("q", v.validate_text, q)
        if tag:
            tag = errors.check("tag", v.validate_tag, tag)
        errors.raise_if_any()
        query = select(Template).where(or_(Template.source == "filesystem", Template.owner_id == user_id))
        if q:
            query = query.where(
                or_(Template.name.icontains(q, autoescape=True), Template.description.icontains(q, autoescape=True))
            )
        if tag:
            # Tags are validated to a charset JSON never escapes, so the serialised list contains "tag" exactly
            # when the tag is present; this works the same on PostgreSQL (jsonb) and SQLite (JSON text).
            query = query.where(cast(Template.tags, String).like(f'%"{_escape_like(tag)}"%', escape="\\"))
        if source:
            query = query.where(Template.source == source)
        if cursor:
            name, last_id = decode_cursor(cursor, NameCursor)
            query = query.where(or_(Template.name > name, and_(Template.name == name, Template.id > last_id)))
        # Counts instead of the children themselves: a list page never carries script or file contents.
        counted = query.add_columns(*(_child_count(model) for model in (TemplateScript, TemplateFile, TemplatePackage)))
        counted = counted.options(raiseload(Template.scripts), raiseload(Template.files), raiseload(Template.packages))
        result = await self.session.execute(counted.order_by(Template.name, Template.id).limit(limit + 1))
        rows = list(result.all())
        next_cursor = encode_cursor(rows[limit - 1][0].name, rows[limit - 1][0].id) if len(rows) > limit else None
        return TemplatePage(items=[to_summary(*row) for row in rows[:limit]], next_cursor=next_cursor)

    async def get_visible(self, user_id: uuid.UUID, template_id: uuid.UUID) -> Template:
        """A filesystem template or one of the user's; anything else is `NotFoundError`."""
        template = await self.repository.get_one_or_none(id=template_id)
        if template is None or (template.source == "custom" and template.owner_id != user_id):
            raise NotFoundError("Template not found.")
        return template

    async def get_writable(self, user_id: uuid.UUID, template_id: uuid.UUID) -> Template:
        """The user's own custom template; a filesystem template raises `TemplateReadOnly`."""
        template = await self.get_visible(user_id, template_id)
        if template.source == "filesystem":
            raise TemplateReadOnly(
                f"Template {template.name!r} comes from the templates directory; change it there and run discovery."
            )
        return template

    # ------------------------------------------------------------------ writes

    async def create_custom(self, user_id: uuid.UUID, data: TemplateWrite) -> Template:
        """Validate and store a new custom template owned by the user."""
        data = validate_template(data)
        template = Template(source="custom", owner_id=user_id)
        await self._store(template, data, new=True)
        await self.revisions.record(template, author="user", user_id=user_id)
        return template

    async def replace(self, user_id: uuid.UUID, template_id: uuid.UUID, data: TemplateWrite) -> Template:
        """Replace a custom template and all its children; on any failure nothing changes."""
        data = validate_template(data)
        template = await self.get_writable(user_id, template_id)
        await self._store(template, data, new=False)
        await self.revisions.record(template, author="user", user_id=user_id)
        return template

    async def delete_custom(self, user_id: uuid.UUID, template_id: uuid.UUID) -> None:
        template = await self.get_writable(user_id, template_id)
        await self.revisions.release_template(template.id)
        await self.repository.delete(template.id)

    async def add_packages_from_bucket(
        self, user_id: uuid.UUID, template_id: uuid.UUID, bucket_id: uuid.UUID
    ) -> Template:
        """Copy the user's bucket's packages into the template (labelled with the bucket's name).

        Packages already in the template (same manager and name) are left as they are.
        """
        template = await self.get_writable(user_id, template_id)
        session = self.session
        bucket = await session.scalar(
            select(PackageBucket).where(PackageBucket.id == bucket_id, PackageBucket.owner_id == user_id)
        )
        if bucket is None:
            raise NotFoundError("Package bucket not found.")
        present = {(p.manager, p.name) for p in template.packages}
        position = max((p.position for p in template.packages), default=-1) + 1
        package: BucketPackage
        with _integrity_as_validation(template.name):
            async with session.begin_nested():
                for package in bucket.packages:
                    if (package.manager, package.name) in present:
                        continue
                    template.packages.append(
                        TemplatePackage(
                            position=position,
                            name=package.name,
                            manager=package.manager,
                            version=package.version,
                            bucket=bucket.name,
                        )
                    )
                    position += 1
                await session.flush()
        await session.refresh(template)
        await self.revisions.record(template, author="user", user_id=user_id)
        return template

    async def _store(
        self, template: Template, data: TemplateWrite, *, new: bool, content_hash: str | None = None
    ) -> None:
        """Write fields and children inside a savepoint: a failing child rolls everything back to before the call."""
        session = self.session
        with _integrity_as_validation(data.name):
            async with session.begin_nested():
                _set_fields(template, data)
                if content_hash is not None:
                    template.content_hash = content_hash
                scripts, files, packages = _children(data)
                for (_table, field, message), rows, key in zip(
                    _DUPLICATES, (scripts, files, packages), (_script_key, _file_key, _package_key), strict=True
                ):
                    _check_unique(field, message, rows, key)  # type: ignore[arg-type]
                if new:
                    session.add(template)
                    template.scripts.extend(scripts)
                    template.files.extend(files)
                    template.packages.extend(packages)
                else:
                    # Rows are matched by their unique key, so no insert can collide with a row still to be deleted.
                    template.scripts = _merge(list(template.scripts), scripts, _script_key)
                    template.files = _merge(list(template.files), files, _file_key)
                    template.packages = _merge(list(template.packages), packages, _package_key)
                await session.flush()
        await session.refresh(template)

    # ------------------------------------------------------------------ filesystem sync (see discovery.py)

    async def filesystem_templates(self) -> dict[str, Template]:
        """Every filesystem template by its directory name."""
        rows = await self.session.scalars(select(Template).where(Template.source == "filesystem"))
        return {t.source_dir: t for t in rows if t.source_dir is not None}

    async def store_filesystem(
        self, existing: Template | None, source_dir: str, data: TemplateWrite, content_hash: str
    ) -> Template:
        """Create or replace a filesystem template from its parsed directory (already validated)."""
        template = existing or Template(source="filesystem", owner_id=None, source_dir=source_dir)
        await self._store(template, data, new=existing is None, content_hash=content_hash)
        await self.revisions.record(template, author="discovery")
        return template

    async def remove_filesystem(self, template: Template) -> None:
        await self.revisions.release_template(template.id)
        await self.repository.delete(template.id)


def _child_count(model: type[TemplateScript] | type[TemplateFile] | type[TemplatePackage]) -> ScalarSelect[int]:
    return select(func.count()).where(model.template_id == Template.id).correlate(Template).scalar_subquery()


def to_summary(template: Template, script_count: int, file_count: int, package_count: int) -> TemplateSummary:
    return to_read_schema(
        template, TemplateSummary, script_count=script_count, file_count=file_count, package_count=package_count
    )


def to_read(template: Template) -> TemplateRead:
    return to_read_schema(template, TemplateRead)
