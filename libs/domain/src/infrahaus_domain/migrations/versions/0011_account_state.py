"""account re-validation: users.account_checked_at and users.account_disabled_at

The worker re-reads each user's Proxmox account on a schedule; `account_disabled_at` set means Proxmox said the
account is disabled, expired or gone, and the API refuses that user's sessions and tokens.

Revision ID: 0011_account_state
Revises: 0010_batches
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "0011_account_state"
down_revision: str | None = "0010_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("account_checked_at", DateTimeUTC(timezone=True), nullable=True))
        batch.add_column(sa.Column("account_disabled_at", DateTimeUTC(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("account_disabled_at")
        batch.drop_column("account_checked_at")
