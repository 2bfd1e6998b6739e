"""Templates (with their scripts, files and packages) and per-user package buckets.

A template is either discovered from the templates directory (`source="filesystem"`: no owner,
keyed by its directory `source_dir`, shared and read-only) or created through the API
(`source="custom"`: owned by one user). Children are owned by their template and replaced as a whole.
"""

import uuid
from typing import Any, Literal

from advanced_alchemy.types import GUID
from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from infrahaus_domain.allowlist import FilePolicy, PackageManager
from infrahaus_domain.models.base import UUIDv7AuditBase

TemplateSource = Literal["filesystem", "custom"]

# advanced-alchemy's JsonB adds an Oracle variant that breaks on SQLAlchemy 2.1; jsonb on PostgreSQL is all we need.
JsonList = JSON().with_variant(JSONB(), "postgresql")


class Template(UUIDv7AuditBase):
    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("owner_id", "name", name="uq_templates_owner_id_name"),
        UniqueConstraint("source_dir", name="uq_templates_source_dir"),
        CheckConstraint(
            "(source = 'filesystem' AND owner_id IS NULL AND source_dir IS NOT NULL)"
            " OR (source = 'custom' AND owner_id IS NOT NULL AND source_dir IS NULL)",
            name="source_owner",
        ),
    )

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    os_template: Mapped[str | None] = mapped_column(String(255), default=None)
    cores: Mapped[int] = mapped_column(Integer, default=1)
    memory_mb: Mapped[int] = mapped_column(Integer, default=512)
    swap_mb: Mapped[int] = mapped_column(Integer, default=512)
    disk_gb: Mapped[int] = mapped_column(Integer, default=8)
    storage: Mapped[str] = mapped_column(String(64), default="local-lvm")
    bridge: Mapped[str] = mapped_column(String(32), default="vmbr0")
    unprivileged: Mapped[bool] = mapped_column(Boolean, default=True)
    nesting: Mapped[bool] = mapped_column(Boolean, default=False)
    keyctl: Mapped[bool] = mapped_column(Boolean, default=False)
    fuse: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[TemplateSource] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )
    # Filesystem templates only: the directory name (the sync key) and the hash of what was read.
    source_dir: Mapped[str | None] = mapped_column(String(100), default=None)
    content_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # The number of the template's newest revision (0 before the first one is recorded).
    revision: Mapped[int] = mapped_column(Integer, default=0)

    scripts: Mapped[list["TemplateScript"]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
        order_by="TemplateScript.position",
    )
    files: Mapped[list["TemplateFile"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin", order_by="TemplateFile.position"
    )
    packages: Mapped[list["TemplatePackage"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin", order_by="TemplatePackage.position"
    )


class TemplateScript(UUIDv7AuditBase):
    __tablename__ = "template_scripts"
    __table_args__ = (UniqueConstraint("template_id", "name", name="uq_template_scripts_template_id_name"),)

    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class TemplateFile(UUIDv7AuditBase):
    __tablename__ = "template_files"
    __table_args__ = (
        UniqueConstraint("template_id", "target_path", "name", name="uq_template_files_template_id_target"),
        CheckConstraint("policy IN ('replace', 'default', 'backup')", name="policy"),
    )

    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    target_path: Mapped[str] = mapped_column(String(255))
    policy: Mapped[FilePolicy] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(4), default="0644")
    content: Mapped[str] = mapped_column(Text)


class TemplatePackage(UUIDv7AuditBase):
    __tablename__ = "template_packages"
    __table_args__ = (
        UniqueConstraint("template_id", "manager", "name", name="uq_template_packages_template_id_manager_name"),
        CheckConstraint("manager IN ('apt', 'npm', 'pip', 'custom')", name="manager"),
    )

    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(214))
    manager: Mapped[PackageManager] = mapped_column(String(16))
    version: Mapped[str | None] = mapped_column(String(128), default=None)
    bucket: Mapped[str | None] = mapped_column(String(64), default=None)


RevisionAuthor = Literal["user", "discovery", "migration"]


class TemplateRevision(UUIDv7AuditBase):
    """One immutable state of a template: its whole content (fields and children) as a JSON snapshot, numbered per
    template from 1, with the digest of that content and who or what made it.

    A revision outlives its template while a container references it (it was created from it or synced to it):
    `template_id` then becomes null. Unreferenced old revisions are pruned (`templates.revisions`).
    """

    __tablename__ = "template_revisions"
    __table_args__ = (
        UniqueConstraint("template_id", "number", name="uq_template_revisions_template_id_number"),
        CheckConstraint("author_kind IN ('user', 'discovery', 'migration')", name="author_kind"),
    )

    # Typed explicitly (like containers.template_id): the FK is declared by name only.
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID(length=16), ForeignKey("templates.id", ondelete="SET NULL"), default=None, index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    content: Mapped[dict[str, Any]] = mapped_column(JsonList)
    author_kind: Mapped[RevisionAuthor] = mapped_column(String(16))
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID(length=16), ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class PackageBucket(UUIDv7AuditBase):
    """A user's reusable, named group of packages; templates copy packages out of it."""

    __tablename__ = "package_buckets"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_package_buckets_owner_id_name"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")

    packages: Mapped[list["BucketPackage"]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
        order_by="(BucketPackage.manager, BucketPackage.name)",
    )


class BucketPackage(UUIDv7AuditBase):
    __tablename__ = "bucket_packages"
    __table_args__ = (
        UniqueConstraint("bucket_id", "manager", "name", name="uq_bucket_packages_bucket_id_manager_name"),
        CheckConstraint("manager IN ('apt', 'npm', 'pip', 'custom')", name="manager"),
    )

    bucket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("package_buckets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(214))
    manager: Mapped[PackageManager] = mapped_column(String(16))
    version: Mapped[str | None] = mapped_column(String(128), default=None)
