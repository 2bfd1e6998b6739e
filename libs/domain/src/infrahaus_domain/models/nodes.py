"""Proxmox VE nodes a user targets, and the VMID reservations that make container creation race-free."""

from uuid import UUID

from advanced_alchemy.types import GUID
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from infrahaus_domain.keys import register_encrypted_column
from infrahaus_domain.models.base import UUIDv7AuditBase


class Node(UUIDv7AuditBase):
    """One Proxmox VE node of one user.

    `token_secret`, `ssh_password` and `ssh_private_key` hold SecretBox ciphertext, never plaintext;
    only the node service encrypts and decrypts them.
    """

    __tablename__ = "nodes"
    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_nodes_user_id_name"),
        # At most one default node per user, enforced by the database rather than by read-then-write.
        Index(
            "uq_nodes_user_id_default",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=8006)
    pve_node: Mapped[str] = mapped_column(String(100))
    token_id: Mapped[str] = mapped_column(String(255))
    token_secret: Mapped[str] = mapped_column(Text)
    tls_verify: Mapped[bool] = mapped_column(Boolean, default=True)
    tls_fingerprint: Mapped[str | None] = mapped_column(String(128), default=None)
    # None means "same as host": the effective SSH host follows later changes of `host`.
    ssh_host: Mapped[str | None] = mapped_column(String(255), default=None)
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    ssh_username: Mapped[str] = mapped_column(String(64), default="root")
    ssh_password: Mapped[str | None] = mapped_column(Text, default=None)
    ssh_private_key: Mapped[str | None] = mapped_column(Text, default=None)
    ssh_host_key: Mapped[str | None] = mapped_column(Text, default=None)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def effective_ssh_host(self) -> str:
        return self.ssh_host or self.host


register_encrypted_column(Node.token_secret)
register_encrypted_column(Node.ssh_password)
register_encrypted_column(Node.ssh_private_key)


class VmidReservation(UUIDv7AuditBase):
    """An accepted creation's claim on a (node, vmid); the unique constraint lets exactly one creation win."""

    __tablename__ = "vmid_reservations"
    __table_args__ = (UniqueConstraint("node_id", "vmid", name="uq_vmid_reservations_node_id_vmid"),)

    node_id: Mapped[UUID] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    vmid: Mapped[int] = mapped_column(Integer)
    # The foreign key is added by migration 0004_containers (the containers table comes after this one).
    container_id: Mapped[UUID | None] = mapped_column(
        GUID(length=16), ForeignKey("containers.id", ondelete="CASCADE"), default=None, index=True
    )
