"""Template revisions: every change to a template (an API save or a discovery re-sync) records an immutable, numbered
snapshot of its whole content with a digest and its author.

A save that changes nothing (same digest as the newest revision) records nothing. Revisions a container references
(created from, or synced to) are kept whatever happens to their template; of the others, the newest
`KEEP_UNREFERENCED` are kept and older ones pruned. The content is what creation and sync build a container's spec
from (`containers.spec_builder`), so a revision says exactly what a container made from it should hold.
"""

import hashlib
import uuid
from typing import Any, Literal

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from infrahaus_domain.errors import ConflictError, NotFoundError
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.templates import RevisionAuthor, Template, TemplateRevision
from infrahaus_domain.pagination import decode_cursor, encode_cursor
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.templates.schemas import (
    RevisionAuthorRead,
    RevisionFile,
    RevisionPackage,
    RevisionPage,
    RevisionRead,
    RevisionScript,
    RevisionSummary,
    TemplateContent,
)

# Old revisions no container references that are kept (besides the newest one, which is always kept).
KEEP_UNREFERENCED = 20


RevisionSelector = int | Literal["latest"]


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_of(template: Template) -> TemplateContent:
    """The template's current content (its children in their stored order)."""
    return TemplateContent(
        name=template.name,
        description=template.description,
        tags=list(template.tags or []),
        os_template=template.os_template,
        cores=int(template.cores),
        memory_mb=int(template.memory_mb),
        swap_mb=int(template.swap_mb),
        disk_gb=int(template.disk_gb),
        storage=template.storage,
        bridge=template.bridge,
        unprivileged=bool(template.unprivileged),
        nesting=bool(template.nesting),
        keyctl=bool(template.keyctl),
        fuse=bool(template.fuse),
        scripts=[
            RevisionScript(
                id=s.id,
                name=s.name,
                position=s.position,
                content=s.content,
                description=s.description,
                enabled=bool(s.enabled),
                digest=text_digest(s.content),
            )
            for s in sorted(template.scripts, key=lambda s: s.position)
        ],
        files=[
            RevisionFile(
                name=f.name,
                target_path=f.target_path,
                policy=f.policy,
                mode=f.mode,
                content=f.content,
                digest=text_digest(f.content),
            )
            for f in sorted(template.files, key=lambda f: f.position)
        ],
        packages=[
            RevisionPackage(name=p.name, manager=p.manager, version=p.version, bucket=p.bucket)
            for p in sorted(template.packages, key=lambda p: p.position)
        ],
    )


def content_digest(content: TemplateContent | dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a content document (sorted keys, no whitespace)."""
    data = msgspec.to_builtins(content) if isinstance(content, TemplateContent) else content
    return hashlib.sha256(msgspec.json.encode(data, order="sorted")).hexdigest()


def revision_content(revision: TemplateRevision) -> TemplateContent:
    return msgspec.convert(revision.content, TemplateContent)


class RevisionRepository(SQLAlchemyAsyncRepository[TemplateRevision]):
    model_type = TemplateRevision


def _references(revision_id: Any) -> Any:
    return (
        select(func.count())
        .where(or_(Container.template_revision_id == revision_id, Container.synced_revision_id == revision_id))
        .scalar_subquery()
    )


class RevisionService(DomainService[TemplateRevision, RevisionRepository]):
    """Records and reads template revisions. Never commits."""

    repository_type = RevisionRepository

    async def record(
        self, template: Template, *, author: RevisionAuthor, user_id: uuid.UUID | None = None
    ) -> TemplateRevision:
        """The revision for the template's current content: the newest one when nothing changed, else a new one
        numbered one higher (the template's `revision` follows). Two saves racing for one number: the loser's
        transaction gets `ConflictError`."""
        content = content_of(template)
        data = msgspec.to_builtins(content)
        digest = content_digest(data)
        newest = await self.newest(template.id)
        if newest is not None and newest.digest == digest:
            return newest
        revision = TemplateRevision(
            template_id=template.id,
            number=(newest.number if newest is not None else 0) + 1,
            digest=digest,
            content=data,
            author_kind=author,
            author_id=user_id,
        )
        try:
            async with self.session.begin_nested():
                self.session.add(revision)
                await self.session.flush()
        except IntegrityError:
            raise ConflictError("The template was changed at the same time by another request; try again.") from None
        template.revision = revision.number
        await self.session.flush()
        await self._prune(template.id, revision.number)
        return revision

    async def newest(self, template_id: uuid.UUID) -> TemplateRevision | None:
        return await self.session.scalar(
            select(TemplateRevision)
            .where(TemplateRevision.template_id == template_id)
            .order_by(TemplateRevision.number.desc())
            .limit(1)
        )

    async def find(self, template_id: uuid.UUID, selector: RevisionSelector) -> TemplateRevision:
        """Revision `number` (or the newest for `latest`) of the template; `NotFoundError` otherwise."""
        if selector == "latest":
            found = await self.newest(template_id)
        else:
            found = await self.session.scalar(
                select(TemplateRevision).where(
                    TemplateRevision.template_id == template_id, TemplateRevision.number == selector
                )
            )
        if found is None:
            raise NotFoundError("Revision not found.")
        return found

    async def by_id(self, revision_id: uuid.UUID | None) -> TemplateRevision | None:
        return await self.session.get(TemplateRevision, revision_id) if revision_id is not None else None

    async def page(self, template_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None) -> RevisionPage:
        """The template's revisions, newest first, each with the number of containers referencing it."""
        query = select(TemplateRevision, _references(TemplateRevision.id)).where(
            TemplateRevision.template_id == template_id
        )
        if cursor is not None:
            (number,) = decode_cursor(cursor, tuple[int])
            query = query.where(TemplateRevision.number < number)
        rows = list((await self.session.execute(query.order_by(TemplateRevision.number.desc()).limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return RevisionPage(
            items=[summary(revision, count) for revision, count in rows],
            next_cursor=encode_cursor(rows[-1][0].number) if more and rows else None,
        )

    async def read(self, template_id: uuid.UUID, selector: RevisionSelector) -> RevisionRead:
        revision = await self.find(template_id, selector)
        count = await self.session.scalar(select(_references(revision.id)))
        return RevisionRead(
            template_id=revision.template_id,
            number=revision.number,
            digest=revision.digest,
            author=RevisionAuthorRead(kind=revision.author_kind, user_id=revision.author_id),
            created_at=revision.created_at,
            containers=int(count or 0),
            content=revision_content(revision),
        )

    async def release_template(self, template_id: uuid.UUID) -> None:
        """Before a template is deleted: its revisions no container references go; referenced ones stay (their
        `template_id` is cleared)."""
        referenced = select(Container.template_revision_id).where(Container.template_revision_id.is_not(None))
        synced = select(Container.synced_revision_id).where(Container.synced_revision_id.is_not(None))
        await self.session.execute(
            delete(TemplateRevision).where(
                TemplateRevision.template_id == template_id,
                TemplateRevision.id.not_in(referenced),
                TemplateRevision.id.not_in(synced),
            )
        )
        await self.session.execute(
            update(TemplateRevision).where(TemplateRevision.template_id == template_id).values(template_id=None)
        )
        await self.session.flush()

    async def _prune(self, template_id: uuid.UUID, newest: int) -> None:
        referenced = select(Container.template_revision_id).where(Container.template_revision_id.is_not(None))
        synced = select(Container.synced_revision_id).where(Container.synced_revision_id.is_not(None))
        await self.session.execute(
            delete(TemplateRevision).where(
                TemplateRevision.template_id == template_id,
                TemplateRevision.number <= newest - KEEP_UNREFERENCED - 1,
                TemplateRevision.id.not_in(referenced),
                TemplateRevision.id.not_in(synced),
            )
        )


def summary(revision: TemplateRevision, containers: int) -> RevisionSummary:
    return RevisionSummary(
        number=revision.number,
        digest=revision.digest,
        author=RevisionAuthorRead(kind=revision.author_kind, user_id=revision.author_id),
        created_at=revision.created_at,
        containers=int(containers or 0),
    )
