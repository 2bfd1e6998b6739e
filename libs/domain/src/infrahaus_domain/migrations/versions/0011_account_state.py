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


_COLUMNS = ("account_checked_at", "account_disabled_at")


def upgrade() -> None:
    # Plain ALTERs on both databases: batch mode would recreate `users` on SQLite, and dropping that table cascades
    # to every row that references it (tokens, idempotency keys).
    for name in _COLUMNS:
        op.add_column("users", sa.Column(name, DateTimeUTC(timezone=True), nullable=True))


def downgrade() -> None:
    for name in reversed(_COLUMNS):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE users DROP COLUMN {name}")  # SQLite >= 3.35; alembic would recreate the table
        else:
            op.drop_column("users", name)
