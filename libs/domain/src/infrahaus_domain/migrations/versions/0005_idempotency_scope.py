"""idempotency_keys.scope: the endpoint a key was first used on (keys now serve every creating POST)

Existing rows all come from POST /api/containers, the only endpoint that took keys before.

Revision ID: 0005_idempotency_scope
Revises: 0004_containers
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_idempotency_scope"
down_revision: str | None = "0004_containers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=255), nullable=False, server_default="POST /api/containers"),
    )
    # The default only fills the existing rows; new rows always name their scope.
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("scope", existing_type=sa.String(length=255), server_default=None)


def downgrade() -> None:
    # Before this revision a key only served POST /api/containers; keys of other endpoints would block it there.
    op.execute("DELETE FROM idempotency_keys WHERE scope <> 'POST /api/containers'")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("scope")
