"""Users (one per auth server and Proxmox userid) and their personal API tokens."""

import uuid
from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from infrahaus_domain.models.base import UUIDv7AuditBase


class User(UUIDv7AuditBase):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("auth_server", "userid"),)

    auth_server: Mapped[str] = mapped_column(String(64))
    userid: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # When the worker last read this user's Proxmox account, and since when Proxmox says it is disabled, expired
    # or deleted (its sessions and tokens are refused while set): `infrahaus_domain.users.accounts`.
    account_checked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    account_disabled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    tokens: Mapped[list["ApiToken"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )


class ApiToken(UUIDv7AuditBase):
    """A bearer token `ihs_<lookup_id>_<secret>`; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    user: Mapped[User] = relationship(back_populates="tokens", lazy="raise")
