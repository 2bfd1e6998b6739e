"""bulk actions: batches; operations.batch_id and operations.held

A batch is one bulk action over many containers; each container's part is an ordinary operation pointing at it.
`held` marks a queued operation that waits for a free slot of its batch's `max_parallel` (no job message sent yet).

Revision ID: 0010_batches
Revises: 0009_webhooks
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_batches"
down_revision: str | None = "0009_webhooks"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=True),
        sa.Column("selection", _JSON, nullable=False),
        sa.Column("targets", _JSON, nullable=False),
        sa.Column("skipped", _JSON, nullable=False),
        sa.Column("cancelled_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_batches_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index("ix_batches_user_id_id", "batches", ["user_id", "id"])
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("batch_id", GUID(length=16), nullable=True))
        batch.add_column(sa.Column("held", sa.Boolean(), server_default=sa.text("false"), nullable=False))
        batch.create_foreign_key("fk_operations_batch_id_batches", "batches", ["batch_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_operations_batch_id", "operations", ["batch_id"])
    op.create_index(
        "ix_operations_held_batch_id",
        "operations",
        ["batch_id"],
        postgresql_where=sa.text("held"),
        sqlite_where=sa.text("held"),
    )


def downgrade() -> None:
    op.drop_index("ix_operations_held_batch_id", table_name="operations")
    op.drop_index("ix_operations_batch_id", table_name="operations")
    with op.batch_alter_table("operations") as batch:
        batch.drop_constraint("fk_operations_batch_id_batches", type_="foreignkey")
        batch.drop_column("held")
        batch.drop_column("batch_id")
    op.drop_index("ix_batches_user_id_id", table_name="batches")
    op.drop_table("batches")
