"""Day two: template_revisions; templates.revision; containers.template_revision_id, synced_revision_id,
applied_spec, sync_on_start

Every existing template gets revision 1 (author `migration`) holding its current content, so the first change made
after this migration becomes revision 2. The content and its digest are built here the same way
`infrahaus_domain.templates.revisions` builds them (a canonical JSON document, SHA-256); a template saved unchanged
afterwards therefore records no new revision. Existing containers keep no revision reference: which state of their
template made them is not known.

Revision ID: 0007_day_two
Revises: 0006_container_status
Create Date: 2026-12-05
"""

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_day_two"
down_revision: str | None = "0006_container_status"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_FIELDS = (
    "name",
    "description",
    "tags",
    "os_template",
    "cores",
    "memory_mb",
    "swap_mb",
    "disk_gb",
    "storage",
    "bridge",
    "unprivileged",
    "nesting",
    "keyctl",
    "fuse",
)


def _digest(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _uuid7() -> uuid.UUID:
    """A UUIDv7 (time-ordered) like the models' ids."""
    millis = int(datetime.now(UTC).timestamp() * 1000)
    raw = bytearray(millis.to_bytes(6, "big") + uuid.uuid4().bytes[6:])
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


def _backfill() -> None:
    bind = op.get_bind()
    meta = sa.MetaData()
    templates = sa.Table("templates", meta, autoload_with=bind)
    scripts = sa.Table("template_scripts", meta, autoload_with=bind)
    files = sa.Table("template_files", meta, autoload_with=bind)
    packages = sa.Table("template_packages", meta, autoload_with=bind)
    revisions = sa.Table("template_revisions", meta, autoload_with=bind)
    now = datetime.now(UTC)
    for template in bind.execute(sa.select(templates)).mappings().all():
        content: dict[str, Any] = {name: template[name] for name in _FIELDS}
        content["tags"] = list(template["tags"] or [])
        content["scripts"] = [
            {
                "id": str(row["id"]),
                "name": row["name"],
                "position": row["position"],
                "content": row["content"],
                "description": row["description"],
                "enabled": bool(row["enabled"]),
                "digest": _text_digest(row["content"]),
            }
            for row in bind.execute(
                sa.select(scripts).where(scripts.c.template_id == template["id"]).order_by(scripts.c.position)
            ).mappings()
        ]
        content["files"] = [
            {
                "name": row["name"],
                "target_path": row["target_path"],
                "policy": row["policy"],
                "mode": row["mode"],
                "content": row["content"],
                "digest": _text_digest(row["content"]),
            }
            for row in bind.execute(
                sa.select(files).where(files.c.template_id == template["id"]).order_by(files.c.position)
            ).mappings()
        ]
        content["packages"] = [
            {"name": row["name"], "manager": row["manager"], "version": row["version"], "bucket": row["bucket"]}
            for row in bind.execute(
                sa.select(packages).where(packages.c.template_id == template["id"]).order_by(packages.c.position)
            ).mappings()
        ]
        for key in ("cores", "memory_mb", "swap_mb", "disk_gb"):
            content[key] = int(content[key])
        for key in ("unprivileged", "nesting", "keyctl", "fuse"):
            content[key] = bool(content[key])
        bind.execute(
            revisions.insert().values(
                id=_uuid7(),
                template_id=template["id"],
                number=1,
                digest=_digest(content),
                content=content,
                author_kind="migration",
                author_id=None,
                created_at=now,
                updated_at=now,
            )
        )
        bind.execute(templates.update().where(templates.c.id == template["id"]).values(revision=1))


def upgrade() -> None:
    op.create_table(
        "template_revisions",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("template_id", GUID(length=16), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("content", _JSON, nullable=False),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author_id", GUID(length=16), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name=op.f("fk_template_revisions_template_id_templates"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_template_revisions_author_id_users"), ondelete="SET NULL"
        ),
        sa.CheckConstraint(
            "author_kind IN ('user', 'discovery', 'migration')", name="ck_template_revisions_author_kind"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_revisions")),
        sa.UniqueConstraint("template_id", "number", name="uq_template_revisions_template_id_number"),
    )
    op.create_index(op.f("ix_template_revisions_template_id"), "template_revisions", ["template_id"])
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("containers") as batch:
        batch.add_column(sa.Column("template_revision_id", GUID(length=16), nullable=True))
        batch.add_column(sa.Column("synced_revision_id", GUID(length=16), nullable=True))
        batch.add_column(sa.Column("applied_spec", _JSON, nullable=True))
        batch.add_column(sa.Column("sync_on_start", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_foreign_key(
            op.f("fk_containers_template_revision_id_template_revisions"),
            "template_revisions",
            ["template_revision_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.create_foreign_key(
            op.f("fk_containers_synced_revision_id_template_revisions"),
            "template_revisions",
            ["synced_revision_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.create_index(op.f("ix_containers_template_revision_id"), ["template_revision_id"])
        batch.create_index(op.f("ix_containers_synced_revision_id"), ["synced_revision_id"])
    _backfill()


def downgrade() -> None:
    with op.batch_alter_table("containers") as batch:
        batch.drop_index(op.f("ix_containers_synced_revision_id"))
        batch.drop_index(op.f("ix_containers_template_revision_id"))
        batch.drop_constraint(op.f("fk_containers_synced_revision_id_template_revisions"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_containers_template_revision_id_template_revisions"), type_="foreignkey")
        batch.drop_column("sync_on_start")
        batch.drop_column("applied_spec")
        batch.drop_column("synced_revision_id")
        batch.drop_column("template_revision_id")
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("revision")
    op.drop_index(op.f("ix_template_revisions_template_id"), table_name="template_revisions")
    op.drop_table("template_revisions")
