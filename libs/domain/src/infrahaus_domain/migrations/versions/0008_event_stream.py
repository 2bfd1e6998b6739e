"""events of every container in one stream: events.user_id/node_id/position/state, event_positions; events and
operations outlive their container (no foreign key on container_id); the event type `error` is now `failed`

`position` is the id of the global event stream, assigned at commit (see `infrahaus_domain.events.positions`).
Existing rows get their `id` as position (ids were allocated in about commit order), and the counter starts
after the largest. Events and operations keep the id of a deleted container: a stream resumed after a delete
still finds the `deleted` event, and an operation still names what it was for.

Revision ID: 0008_event_stream
Revises: 0007_day_two
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from advanced_alchemy.types import GUID
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_event_stream"
down_revision: str | None = "0007_day_two"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("user_id", GUID(length=16), nullable=True))
        batch.add_column(sa.Column("node_id", GUID(length=16), nullable=True))
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("state", _JSON, nullable=True))
        batch.drop_constraint("fk_events_container_id_containers", type_="foreignkey")
    op.execute(
        "UPDATE events SET"
        " user_id = (SELECT c.user_id FROM containers c WHERE c.id = events.container_id),"
        " node_id = (SELECT c.node_id FROM containers c WHERE c.id = events.container_id),"
        " position = id"
    )
    op.execute("UPDATE events SET type = 'failed' WHERE type = 'error'")
    with op.batch_alter_table("events") as batch:
        batch.alter_column("user_id", existing_type=GUID(length=16), nullable=False)
        batch.create_foreign_key("fk_events_user_id_users", "users", ["user_id"], ["id"], ondelete="CASCADE")
    op.create_index("ix_events_user_id_position", "events", ["user_id", "position"])
    op.create_index("uq_events_position", "events", ["position"], unique=True)

    op.create_table(
        "event_positions",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_positions")),
    )
    op.execute("INSERT INTO event_positions (id, last) SELECT 1, COALESCE(MAX(position), 0) FROM events")

    with op.batch_alter_table("operations") as batch:
        batch.drop_constraint("fk_operations_container_id_containers", type_="foreignkey")


def downgrade() -> None:
    # The foreign keys come back: rows of containers that no longer exist lose their container (as before).
    op.execute("UPDATE operations SET container_id = NULL WHERE container_id NOT IN (SELECT id FROM containers)")
    op.execute("DELETE FROM events WHERE container_id NOT IN (SELECT id FROM containers)")
    op.execute("UPDATE events SET type = 'error' WHERE type = 'failed'")
    with op.batch_alter_table("operations") as batch:
        batch.create_foreign_key(
            "fk_operations_container_id_containers", "containers", ["container_id"], ["id"], ondelete="SET NULL"
        )
    op.drop_table("event_positions")
    op.drop_index("uq_events_position", table_name="events")
    op.drop_index("ix_events_user_id_position", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("fk_events_user_id_users", type_="foreignkey")
        batch.drop_column("state")
        batch.drop_column("position")
        batch.drop_column("node_id")
        batch.drop_column("user_id")
        batch.create_foreign_key(
            "fk_events_container_id_containers", "containers", ["container_id"], ["id"], ondelete="CASCADE"
        )
