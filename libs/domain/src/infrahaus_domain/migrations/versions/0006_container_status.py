"""containers.status/status_at: the guest's status as the last operation left it; containers.pve_create_upid: the
create task that made the guest

`status` and `status_at` let a read made right after an operation show its result even when a node answer cached
(or fetched) before the operation finished says otherwise. `pve_create_upid` identifies the guest as ours while its
config holds nothing but `lock: create` (an unfinished or interrupted create), when no ownership marker is readable.

Revision ID: 0006_container_status
Revises: 0005_idempotency_scope
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "0006_container_status"
down_revision: str | None = "0005_idempotency_scope"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("containers") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("status_at", DateTimeUTC(timezone=True), nullable=True))
        batch.add_column(sa.Column("pve_create_upid", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("containers") as batch:
        batch.drop_column("pve_create_upid")
        batch.drop_column("status_at")
        batch.drop_column("status")
