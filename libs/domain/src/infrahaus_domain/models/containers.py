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
OPERATION_KINDS = ("create", "start", "stop", "shutdown", "restart", "delete", "services_refresh")

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
    services_discovered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Operation(UUIDv7AuditBase):
    """A long-running piece of work on a container (create, lifecycle, delete, service refresh).

    At most one operation per container is active (`queued` or `running`): a partial unique index makes the
    database refuse a second one, on PostgreSQL and SQLite alike. `container_id` is nulled when the container
    row is removed (a finished delete), so the operation stays readable by its user.
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
    )

    container_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("containers.id", ondelete="SET NULL"), default=None, index=True
    )
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[str | None] = mapped_column(String(32), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    # Kind-specific inputs, e.g. {"timeout": 60} for shutdown. Never secrets.
    params: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class _IdentityBase(CommonTableAttributes, DeclarativeBase, AsyncAttrs):
    """Same registry (and so the same metadata) as the UUID models, with a bigint identity key."""

    __abstract__ = True
    registry = orm_registry


class Event(_IdentityBase):
    """One entry of a container's audit trail.

    `id` is a global bigint identity. `seq` is the per-container sequence shared with the progress log lines
    (see `infrahaus_domain.events.logbuffer`): it is the SSE event id, so events and log lines interleave in one
    monotonically increasing id space per container.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("container_id", "seq", name="uq_events_container_id_seq"),
        Index("ix_events_container_id_type", "container_id", "type"),
    )

    id: Mapped[int] = mapped_column(BigIntIdentity, Identity(start=1, increment=1), primary_key=True)
    container_id: Mapped[UUID] = mapped_column(ForeignKey("containers.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    operation_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("operations.id", ondelete="SET NULL"), default=None, index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    # `metadata` is reserved by SQLAlchemy's declarative classes; the column keeps the public name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=_utcnow)


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
