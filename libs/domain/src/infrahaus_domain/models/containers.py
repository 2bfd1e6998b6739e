"""Containers and everything that happens to them: operations, the event trail, discovered services and
their encrypted credentials.

No column ever holds a root password. `ServiceCredential.value` holds SecretBox ciphertext only.
"""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import CommonTableAttributes, orm_registry
from advanced_alchemy.types import GUID, DateTimeUTC
from advanced_alchemy.types.identity import BigIntIdentity
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from infrahaus_domain.keys import register_encrypted_column
from infrahaus_domain.models.base import UUIDv7AuditBase

LIFECYCLES = ("creating", "ready", "error", "deleting")
OPERATION_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
OPERATION_KINDS = (
    "create",
    "start",
    "stop",
    "shutdown",
    "restart",
    "delete",
    "services_refresh",
    "sync",
    "snapshot_create",
    "snapshot_rollback",
    "snapshot_delete",
)

# advanced-alchemy's JsonB adds an Oracle variant that breaks on SQLAlchemy 2.1; jsonb on PostgreSQL is all we need.
JsonB = JSON().with_variant(JSONB(), "postgresql")

_ACTIVE_SQL = "status IN ('queued', 'running')"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Container(UUIDv7AuditBase):
    """One LXC container a user created through infrahaus.

    `request` is the validated creation request as accepted (defaults from the template applied), kept so a
    failed creation can be retried and the detail view can show what was asked for. It never holds a password.
    `pve_created_by_operation` is set once the Proxmox create task of that operation succeeded: a redelivered
    create message of the same operation resumes instead of creating the container a second time.
    `pve_create_upid` is the create task infrahaus started for this record (recorded as soon as Proxmox answered):
    while a guest's config holds only `lock: create`, that task is the only proof the guest is ours.
    `status` / `status_at` are the guest's status as the last successful operation left it, and when: reads prefer
    it over a node answer fetched before that moment (see `containers.listing`).
    """

    __tablename__ = "containers"
    __table_args__ = (
        Index("ix_containers_user_id_created_at", "user_id", "created_at"),
        Index("ix_containers_node_id_vmid", "node_id", "vmid"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[UUID] = mapped_column(ForeignKey("nodes.id", ondelete="RESTRICT"))
    vmid: Mapped[int] = mapped_column(Integer)
    hostname: Mapped[str] = mapped_column(String(63))
    # Typed explicitly: the templates table may be declared after this module is imported.
    template_id: Mapped[UUID | None] = mapped_column(
        GUID(length=16), ForeignKey("templates.id", ondelete="SET NULL"), default=None, index=True
    )
    lifecycle: Mapped[str] = mapped_column(String(16), default="creating")
    ip_address: Mapped[str | None] = mapped_column(String(64), default=None)
    request: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    pve_created_by_operation: Mapped[UUID | None] = mapped_column(default=None)
    pve_create_upid: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    status_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    services_discovered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # Day two: the template revision the container was created from and the one a sync last brought it to; the spec
    # that sync applied (`ContainerSpec`; null: the creation spec in `request` is what is applied); and whether a
    # sync runs after every start made through infrahaus.
    template_revision_id: Mapped[UUID | None] = mapped_column(
        GUID(length=16), ForeignKey("template_revisions.id", ondelete="RESTRICT"), default=None, index=True
    )
    synced_revision_id: Mapped[UUID | None] = mapped_column(
        GUID(length=16), ForeignKey("template_revisions.id", ondelete="RESTRICT"), default=None, index=True
    )
    applied_spec: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    sync_on_start: Mapped[bool] = mapped_column(Boolean, default=False)


class Operation(UUIDv7AuditBase):
    """A long-running piece of work on a container (create, lifecycle, delete, service refresh).

    At most one operation per container is active (`queued` or `running`): a partial unique index makes the
    database refuse a second one, on PostgreSQL and SQLite alike. `container_id` has no foreign key: once a delete
    removed the container row, its operations still name the container they were for (and stay readable by
    their user).
    """

    __tablename__ = "operations"
    __table_args__ = (
        Index(
            "uq_operations_active_container",
            "container_id",
            unique=True,
            postgresql_where=text(_ACTIVE_SQL),
            sqlite_where=text(_ACTIVE_SQL),
        ),
        Index("ix_operations_user_id_created_at", "user_id", "created_at"),
        Index("ix_operations_status_heartbeat_at", "status", "heartbeat_at"),
        Index("ix_operations_held_batch_id", "batch_id", postgresql_where=text("held"), sqlite_where=text("held")),
    )

    container_id: Mapped[UUID | None] = mapped_column(GUID(length=16), default=None, index=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[str | None] = mapped_column(String(32), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    # Kind-specific inputs, e.g. {"timeout": 60} for shutdown; a placed creation's decision under "placement".
    # Never secrets.
    params: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # The bulk action it is part of (`models.batches.Batch`), and whether it still waits for a free slot of that
    # batch's `max_parallel` (queued, its job not sent yet; the batch releases it when one of its operations ends).
    batch_id: Mapped[UUID | None] = mapped_column(
        GUID(length=16), ForeignKey("batches.id", ondelete="SET NULL"), default=None, index=True
    )
    held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def placement(self) -> dict[str, Any] | None:
        """The placement decision of a creation with `node_id: "auto"` (kept in `params`: `result` is the
        worker's)."""
        value = (self.params or {}).get("placement")
        return value if isinstance(value, dict) else None


class _IdentityBase(CommonTableAttributes, DeclarativeBase, AsyncAttrs):
    """Same registry (and so the same metadata) as the UUID models, with a bigint identity key."""

    __abstract__ = True
    registry = orm_registry


class Event(_IdentityBase):
    """One entry of a container's audit trail, and one item of the event streams.

    `id` is a global bigint identity (the audit trail's order and cursor). `seq` is the per-container sequence
    shared with the progress log lines (see `infrahaus_domain.events.logbuffer`): the id of the container's
    progress stream. `position` is the id of the global stream (`GET /api/events/stream`): assigned when the
    inserting transaction commits, under the one row of `event_positions`, so positions grow in commit order and a
    reader that has seen position N can never later find a smaller one (`infrahaus_domain.events.positions`).

    The row outlives its container (no foreign key on `container_id`): a stream resumed after a delete still
    finds the `deleted` event. `user_id` and `node_id` are copied from the container so the global stream can be
    filtered without it. `state` is what the container and its operation looked like right after the event.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("container_id", "seq", name="uq_events_container_id_seq"),
        Index("ix_events_container_id_type", "container_id", "type"),
        Index("ix_events_user_id_position", "user_id", "position"),
        Index("uq_events_position", "position", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntIdentity, Identity(start=1, increment=1), primary_key=True)
    container_id: Mapped[UUID] = mapped_column(GUID(length=16))
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    node_id: Mapped[UUID | None] = mapped_column(GUID(length=16), default=None)
    seq: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int | None] = mapped_column(BigInteger, default=None)
    operation_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("operations.id", ondelete="SET NULL"), default=None, index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    # `metadata` is reserved by SQLAlchemy's declarative classes; the column keeps the public name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonB, default=dict)
    state: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=_utcnow)


class EventPosition(_IdentityBase):
    """The one row (`id` 1) counting the global stream's positions; its row lock orders committing writers."""

    __tablename__ = "event_positions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(BigInteger, default=0)


class DiscoveredService(UUIDv7AuditBase):
    """A service found running inside a container (a systemd unit, optionally with a listening TCP port)."""

    __tablename__ = "container_services"
    __table_args__ = (Index("ix_container_services_container_id_name", "container_id", "name"),)

    container_id: Mapped[UUID] = mapped_column(ForeignKey("containers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32), default="systemd")
    port: Mapped[int | None] = mapped_column(Integer, default=None)
    protocol: Mapped[str | None] = mapped_column(String(8), default=None)
    status: Mapped[str] = mapped_column(String(32), default="unknown")
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)


class ServiceCredential(UUIDv7AuditBase):
    """One key/value pair a setup script saved with `save_credential SERVICE KEY VALUE`.

    `value` is SecretBox ciphertext; registered below so `infrahaus keys rotate` re-encrypts it.
    """

    __tablename__ = "service_credentials"
    __table_args__ = (
        UniqueConstraint("container_id", "service", "key", name="uq_service_credentials_container_id_service_key"),
    )

    container_id: Mapped[UUID] = mapped_column(ForeignKey("containers.id", ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)


register_encrypted_column(ServiceCredential.value)
