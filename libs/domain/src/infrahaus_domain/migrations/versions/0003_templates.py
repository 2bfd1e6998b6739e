"""templates (with scripts, files, packages), package_buckets and bucket_packages

Revision ID: 0003_templates
Revises: 0002_nodes
Create Date: 2026-11-22
"""

from typing import Any

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_templates"
down_revision: str | None = "0002_nodes"
branch_labels = None
depends_on = None


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
    ]


def _child_of(table: str, parent: str) -> list[Any]:
    """The id, the parent foreign key (cascading) and the audit columns of a child table."""
    column = f"{parent.removesuffix('s')}_id" if parent != "package_buckets" else "bucket_id"
    return [
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column(column, GUID(length=16), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint([column], [f"{parent}.id"], name=f"fk_{table}_{column}_{parent}", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
    ]


_MANAGER_CHECK = "manager IN ('apt', 'npm', 'pip', 'custom')"


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("os_template", sa.String(length=255), nullable=True),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("swap_mb", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column("storage", sa.String(length=64), nullable=False),
        sa.Column("bridge", sa.String(length=32), nullable=False),
        sa.Column("unprivileged", sa.Boolean(), nullable=False),
        sa.Column("nesting", sa.Boolean(), nullable=False),
        sa.Column("keyctl", sa.Boolean(), nullable=False),
        sa.Column("fuse", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("owner_id", GUID(length=16), nullable=True),
        sa.Column("source_dir", sa.String(length=100), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        *_audit_columns(),
        sa.CheckConstraint(
            "(source = 'filesystem' AND owner_id IS NULL AND source_dir IS NOT NULL)"
            " OR (source = 'custom' AND owner_id IS NOT NULL AND source_dir IS NULL)",
            name="ck_templates_source_owner",
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_templates_owner_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.UniqueConstraint("owner_id", "name", name="uq_templates_owner_id_name"),
        sa.UniqueConstraint("source_dir", name="uq_templates_source_dir"),
    )
    op.create_index("ix_templates_owner_id", "templates", ["owner_id"])

    op.create_table(
        "template_scripts",
        *_child_of("template_scripts", "templates"),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("template_id", "name", name="uq_template_scripts_template_id_name"),
    )
    op.create_index("ix_template_scripts_template_id", "template_scripts", ["template_id"])

    op.create_table(
        "template_files",
        *_child_of("template_files", "templates"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("target_path", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.CheckConstraint("policy IN ('replace', 'default', 'backup')", name="ck_template_files_policy"),
        sa.UniqueConstraint("template_id", "target_path", "name", name="uq_template_files_template_id_target"),
    )
    op.create_index("ix_template_files_template_id", "template_files", ["template_id"])

    op.create_table(
        "template_packages",
        *_child_of("template_packages", "templates"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=214), nullable=False),
        sa.Column("manager", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=True),
        sa.Column("bucket", sa.String(length=64), nullable=True),
        sa.CheckConstraint(_MANAGER_CHECK, name="ck_template_packages_manager"),
        sa.UniqueConstraint("template_id", "manager", "name", name="uq_template_packages_template_id_manager_name"),
    )
    op.create_index("ix_template_packages_template_id", "template_packages", ["template_id"])

    op.create_table(
        "package_buckets",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("owner_id", GUID(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_package_buckets_owner_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_package_buckets"),
        sa.UniqueConstraint("owner_id", "name", name="uq_package_buckets_owner_id_name"),
    )
    op.create_index("ix_package_buckets_owner_id", "package_buckets", ["owner_id"])

    op.create_table(
        "bucket_packages",
        *_child_of("bucket_packages", "package_buckets"),
        sa.Column("name", sa.String(length=214), nullable=False),
        sa.Column("manager", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=True),
        sa.CheckConstraint(_MANAGER_CHECK, name="ck_bucket_packages_manager"),
        sa.UniqueConstraint("bucket_id", "manager", "name", name="uq_bucket_packages_bucket_id_manager_name"),
    )
    op.create_index("ix_bucket_packages_bucket_id", "bucket_packages", ["bucket_id"])


def downgrade() -> None:
    op.drop_index("ix_bucket_packages_bucket_id", table_name="bucket_packages")
    op.drop_table("bucket_packages")
    op.drop_index("ix_package_buckets_owner_id", table_name="package_buckets")
    op.drop_table("package_buckets")
    for table in ("template_packages", "template_files", "template_scripts"):
        op.drop_index(f"ix_{table}_template_id", table_name=table)
        op.drop_table(table)
    op.drop_index("ix_templates_owner_id", table_name="templates")
    op.drop_table("templates")
