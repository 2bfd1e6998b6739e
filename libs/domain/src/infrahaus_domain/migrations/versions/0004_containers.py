"""containers, operations, events, container_services, service_credentials, idempotency_keys

Also gives vmid_reservations.container_id its foreign key now that the containers table exists.

Revision ID: 0004_containers
Revises: 0003_templates
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_containers"
down_revision: str | None = "0003_templates"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ACTIVE = sa.text("status IN ('queued', 'running')")


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "containers",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("node_id", GUID(length=16), nullable=False),
        sa.Column("vmid", sa.Integer(), nullable=False),
        sa.Column("hostname", sa.String(length=63), nullable=False),
        sa.Column("template_id", GUID(length=16), nullable=True),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("request", _JSON, nullable=False),
        sa.Column("last_error", _JSON, nullable=True),
        sa.Column("pve_created_by_operation", GUID(length=16), nullable=True),
        sa.Column("services_discovered_at", DateTimeUTC(timezone=True), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_containers_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_containers_node_id_nodes"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"], ["templates.id"], name=op.f("fk_containers_template_id_templates"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_containers")),
    )
    op.create_index(op.f("ix_containers_user_id"), "containers", ["user_id"])
    op.create_index(op.f("ix_containers_template_id"), "containers", ["template_id"])
    op.create_index("ix_containers_user_id_created_at", "containers", ["user_id", "created_at"])
    op.create_index("ix_containers_node_id_vmid", "containers", ["node_id", "vmid"])

    op.create_table(
        "operations",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("container_id", GUID(length=16), nullable=True),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("error", _JSON, nullable=True),
        sa.Column("result", _JSON, nullable=True),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_operations_container_id_containers"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_operations_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    op.create_index(op.f("ix_operations_container_id"), "operations", ["container_id"])
    op.create_index("ix_operations_user_id_created_at", "operations", ["user_id", "created_at"])
    op.create_index("ix_operations_status_heartbeat_at", "operations", ["status", "heartbeat_at"])
    # The one-active-operation-per-container rule lives here, in the database.
    op.create_index(
        "uq_operations_active_container",
        "operations",
        ["container_id"],
        unique=True,
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(start=1, increment=1)),
        sa.Column("container_id", GUID(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("operation_id", GUID(length=16), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("metadata", _JSON, nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_events_container_id_containers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_events_operation_id_operations"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("container_id", "seq", name="uq_events_container_id_seq"),
    )
    op.create_index(op.f("ix_events_operation_id"), "events", ["operation_id"])
    op.create_index("ix_events_container_id_type", "events", ["container_id", "type"])

    op.create_table(
        "container_services",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("container_id", GUID(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("protocol", sa.String(length=8), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("is_system", sa.Boolean(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["container_id"],
            ["containers.id"],
            name=op.f("fk_container_services_container_id_containers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_container_services")),
    )
    op.create_index("ix_container_services_container_id_name", "container_services", ["container_id", "name"])

    op.create_table(
        "service_credentials",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("container_id", GUID(length=16), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["container_id"],
            ["containers.id"],
            name=op.f("fk_service_credentials_container_id_containers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_credentials")),
        sa.UniqueConstraint("container_id", "service", "key", name="uq_service_credentials_container_id_service_key"),
    )
    op.create_index(op.f("ix_service_credentials_container_id"), "service_credentials", ["container_id"])

    op.create_table(
        "idempotency_keys",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("response_body", _JSON, nullable=True),
        sa.Column("location", sa.String(length=255), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_idempotency_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),
    )

    with op.batch_alter_table("vmid_reservations") as batch:
        batch.create_foreign_key(
            "fk_vmid_reservations_container_id_containers",
            "containers",
            ["container_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("vmid_reservations") as batch:
        batch.drop_constraint("fk_vmid_reservations_container_id_containers", type_="foreignkey")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_service_credentials_container_id"), table_name="service_credentials")
    op.drop_table("service_credentials")
    op.drop_index("ix_container_services_container_id_name", table_name="container_services")
    op.drop_table("container_services")
    op.drop_index("ix_events_container_id_type", table_name="events")
    op.drop_index(op.f("ix_events_operation_id"), table_name="events")
    op.drop_table("events")
    op.drop_index("uq_operations_active_container", table_name="operations")
    op.drop_index("ix_operations_status_heartbeat_at", table_name="operations")
    op.drop_index("ix_operations_user_id_created_at", table_name="operations")
    op.drop_index(op.f("ix_operations_container_id"), table_name="operations")
    op.drop_table("operations")
    op.drop_index("ix_containers_node_id_vmid", table_name="containers")
    op.drop_index("ix_containers_user_id_created_at", table_name="containers")
    op.drop_index(op.f("ix_containers_template_id"), table_name="containers")
    op.drop_index(op.f("ix_containers_user_id"), table_name="containers")
    op.drop_table("containers")
