"""Users, login and personal API tokens as the API shows them."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from infrahaus_domain.allowlist import whole

TokenName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=whole(r"[^\x00-\x1f]+"),
        extra={"message": "Must not contain control characters (line breaks, tabs)."},
    ),
]


class UserRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    auth_server: str
    userid: str
    display_name: str
    created_at: datetime
    last_login_at: datetime | None


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Proxmox credentials; `username` may carry the realm (`root@pam`), else `realm` is appended."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    realm: Annotated[
        str,
        msgspec.Meta(
            pattern=whole(r"[A-Za-z0-9._-]{1,64}"),
            extra={"message": "A realm is 1-64 letters, digits, dots, hyphens or underscores (e.g. pam, pve)."},
        ),
    ] = "pam"
    server: Annotated[str, msgspec.Meta(max_length=64)] | None = None

    def __repr__(self) -> str:
        return f"LoginRequest(username={self.username!r}, realm={self.realm!r}, server={self.server!r})"

    @property
    def userid(self) -> str:
        return self.username if "@" in self.username else f"{self.username}@{self.realm}"


class SessionInfo(msgspec.Struct, kw_only=True):
    """The answer of login and `me`: who is logged in and the CSRF token for unsafe cookie requests."""

    user: UserRead
    auth: Literal["session", "token"]
    csrf_token: str | None
    expires_at: datetime | None


class ApiTokenCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: TokenName
    expires_at: Annotated[
        datetime | msgspec.UnsetType | None,
        msgspec.Meta(
            description=(
                "When the token stops working (RFC 3339 with a time zone). Omitted: the server's default lifetime "
                "(`INFRAHAUS_TOKEN_DEFAULT_LIFETIME_DAYS`, 90 days unless configured); `null`: never expires."
            )
        ),
    ] = msgspec.UNSET


class ApiTokenRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(msgspec.Struct, kw_only=True):
    """The one response that carries the token secret; it cannot be shown again."""

    id: uuid.UUID
    name: str
    token: str
    created_at: datetime
    expires_at: datetime | None


class ApiTokenList(msgspec.Struct, kw_only=True):
    items: list[ApiTokenRead]
    next_cursor: str | None = None
