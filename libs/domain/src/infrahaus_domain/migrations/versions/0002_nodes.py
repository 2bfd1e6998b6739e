"""nodes and vmid_reservations

Revision ID: 0002_nodes
Revises: 0001_users
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "0002_nodes"
down_revision: str | None = "0001_users"
branch_labels = None
depends_on = None


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("pve_node", sa.String(length=100), nullable=False),
        sa.Column("token_id", sa.String(length=255), nullable=False),
        # SecretBox ciphertext (registered for key rotation), never plaintext.
        sa.Column("token_secret", sa.Text(), nullable=False),
        sa.Column("tls_verify", sa.Boolean(), nullable=False),
        sa.Column("tls_fingerprint", sa.String(length=128), nullable=True),
        sa.Column("ssh_host", sa.String(length=255), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("ssh_username", sa.String(length=64), nullable=False),
        sa.Column("ssh_password", sa.Text(), nullable=True),
        sa.Column("ssh_private_key", sa.Text(), nullable=True),
        sa.Column("ssh_host_key", sa.Text(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_nodes_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_nodes_user_id_name")),
    )
    op.create_index(op.f("ix_nodes_user_id"), "nodes", ["user_id"], unique=False)
    # One default node per user: a partial unique index, understood by PostgreSQL and SQLite alike.
    op.create_index(
        op.f("uq_nodes_user_id_default"),
        "nodes",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    )
    op.create_table(
        "vmid_reservations",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("node_id", GUID(length=16), nullable=False),
        sa.Column("vmid", sa.Integer(), nullable=False),
        sa.Column("container_id", GUID(length=16), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_vmid_reservations_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vmid_reservations")),
        sa.UniqueConstraint("node_id", "vmid", name=op.f("uq_vmid_reservations_node_id_vmid")),
    )
    op.create_index(op.f("ix_vmid_reservations_container_id"), "vmid_reservations", ["container_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_vmid_reservations_container_id"), table_name="vmid_reservations")
    op.drop_table("vmid_reservations")
    op.drop_index(op.f("uq_nodes_user_id_default"), table_name="nodes")
    op.drop_index(op.f("ix_nodes_user_id"), table_name="nodes")
    op.drop_table("nodes")
