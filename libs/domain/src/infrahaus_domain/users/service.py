"""Users (created on first login), personal API tokens, and the credential check against Proxmox."""

import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import select, update

from infrahaus_domain.errors import (
    FieldError,
    NotFoundError,
    ValidationFailed,
)
from infrahaus_domain.models.users import ApiToken, User
from infrahaus_domain.outbound import OutboundDeniedError
from infrahaus_domain.proxmox_errors import login_error
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.settings import AuthServer
from infrahaus_domain.users.errors import AuthServerUnreachable
from infrahaus_proxmox.client import Resolver

if TYPE_CHECKING:
    from infrahaus_proxmox import TlsPolicy

logger = logging.getLogger("infrahaus.auth")

TOKEN_PREFIX = "ihs_"  # noqa: S105 - a format tag, not a secret
# last_used_at is informational: write it at most once a minute per token, not on every request.
_LAST_USED_GRANULARITY = timedelta(minutes=1)
# A token created without an expiry ends after this (the API passes `INFRAHAUS_TOKEN_DEFAULT_LIFETIME_DAYS`).
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User


class UserService(DomainService[User, UserRepository]):
    repository_type = UserRepository

    async def record_login(self, auth_server: str, userid: str) -> User:
        """Find or create the user keyed by (auth server, userid) and stamp the login time. Proxmox just let the
        user in, so the account is active: a mark of re-validation is lifted."""
        now = datetime.now(UTC)
        user = await self.repository.get_one_or_none(auth_server=auth_server, userid=userid)
        if user is None:
            user = User(
                auth_server=auth_server, userid=userid, display_name=userid, last_login_at=now, account_checked_at=now
            )
            return await self.repository.add(user)
        user.last_login_at = now
        user.account_checked_at = now
        user.account_disabled_at = None
        return await self.repository.update(user)

    async def account_active(self, user_id: uuid.UUID) -> bool:
        """False when the user is gone or its Proxmox account was last seen disabled, expired or deleted."""
        row = (await self.session.execute(select(User.account_disabled_at).where(User.id == user_id))).one_or_none()
        return row is not None and row[0] is None

    async def due_for_account_check(
        self, auth_server: str, *, checked_before: datetime, logged_in_after: datetime, limit: int = 500
    ) -> list[tuple[uuid.UUID, str, datetime | None]]:
        """(id, userid, account_checked_at) of this server's users whose account was not read since
        `checked_before` and who still hold credentials: a login after `logged_in_after` (a session may live) or
        a token neither revoked nor expired. Least recently checked first."""
        now = datetime.now(UTC)
        live_token = (
            select(ApiToken.id)
            .where(ApiToken.user_id == User.id, ApiToken.revoked_at.is_(None))
            .where(ApiToken.expires_at.is_(None) | (ApiToken.expires_at > now))
            .exists()
        )
        rows = await self.session.execute(
            select(User.id, User.userid, User.account_checked_at)
            .where(User.auth_server == auth_server)
            .where(User.account_checked_at.is_(None) | (User.account_checked_at < checked_before))
            .where((User.last_login_at > logged_in_after) | live_token)
            .order_by(User.account_checked_at.asc().nulls_first(), User.id)
            .limit(limit)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def claim_account_check(self, user_id: uuid.UUID, seen: datetime | None, now: datetime) -> bool:
        """Take the check of one user, unless another worker took it since `seen` was read (no lock is held
        while the auth server is asked)."""
        stale = User.account_checked_at.is_(None) if seen is None else User.account_checked_at == seen
        result = await self.session.execute(
            update(User).where(User.id == user_id, stale).values(account_checked_at=now)
        )
        return bool(getattr(result, "rowcount", 0))

    async def record_account(self, user_id: uuid.UUID, *, active: bool, now: datetime) -> bool:
        """Store what the auth server said; True when this newly marks the account inactive."""
        if active:
            await self.session.execute(
                update(User).where(User.id == user_id).values(account_disabled_at=None, account_checked_at=now)
            )
            return False
        result = await self.session.execute(
            update(User)
            .where(User.id == user_id, User.account_disabled_at.is_(None))
            .values(account_disabled_at=now, account_checked_at=now)
        )
        return bool(getattr(result, "rowcount", 0))


class ApiTokenRepository(SQLAlchemyAsyncRepository[ApiToken]):
    model_type = ApiToken


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokenService(DomainService[ApiToken, ApiTokenRepository]):
    repository_type = ApiTokenRepository

    async def issue(
        self,
        user_id: uuid.UUID,
        name: str,
        expires_at: datetime | msgspec.UnsetType | None = msgspec.UNSET,
        *,
        default_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
    ) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the full token string, which is never stored or shown again.

        `expires_at` left unset ends the token after `default_lifetime`; only an explicit None makes one that never
        expires."""
        if expires_at is msgspec.UNSET:
            expires_at = datetime.now(UTC) + default_lifetime
        elif expires_at is not None:
            if expires_at.tzinfo is None:
                raise ValidationFailed(
                    [
                        FieldError(
                            field="expires_at", message="Must carry a time zone (RFC 3339), e.g. 2030-01-01T00:00:00Z."
                        )
                    ]
                )
            if expires_at <= datetime.now(UTC):
                raise ValidationFailed([FieldError(field="expires_at", message="Must be in the future.")])
        lookup_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = await self.repository.add(
            ApiToken(
                user_id=user_id, name=name, lookup_id=lookup_id, token_hash=_hash_secret(secret), expires_at=expires_at
            )
        )
        return row, f"{TOKEN_PREFIX}{lookup_id}_{secret}"

    async def list_active(self, user_id: uuid.UUID) -> list[ApiToken]:
        """The user's tokens that are neither revoked nor expired, newest first."""
        now = datetime.now(UTC)
        rows = await self.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .where((ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now))
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
        return list(rows)

    async def revoke(self, user_id: uuid.UUID, token_id: uuid.UUID) -> str:
        """Revoke one of the user's tokens and return its lookup id (to drop cached verifications).

        Another user's token is `NotFoundError`, like a missing one.
        """
        lookup_id: str | None = await self.session.scalar(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
            .returning(ApiToken.lookup_id)
        )
        if lookup_id is None:
            raise NotFoundError("API token not found.")
        return lookup_id

    async def authenticate(self, token: str) -> tuple[User, ApiToken] | None:
        """The user and token row of a valid (known, unrevoked, unexpired) token, else None."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        lookup_id, secret = parsed
        session = self.session
        row = (
            await session.execute(
                select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.lookup_id == lookup_id)
            )
        ).first()
        if row is None:
            return None
        api_token, user = row[0], row[1]
        now = datetime.now(UTC)
        if not token_matches(api_token.token_hash, secret):
            return None
        if api_token.revoked_at is not None or (api_token.expires_at is not None and api_token.expires_at <= now):
            return None
        if user.account_disabled_at is not None:
            return None  # Proxmox says the owner's account is disabled, expired or deleted
        if api_token.last_used_at is None or now - api_token.last_used_at > _LAST_USED_GRANULARITY:
            await session.execute(update(ApiToken).where(ApiToken.id == api_token.id).values(last_used_at=now))
        return user, api_token


def parse_token(token: str) -> tuple[str, str] | None:
    """(lookup id, secret) of a well-formed `ihs_<lookup_id>_<secret>` token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    lookup_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not secret or len(lookup_id) != 16:
        return None
    return lookup_id, secret


def token_matches(token_hash: str, secret: str) -> bool:
    """Constant-time check of a token secret against its stored SHA-256."""
    return hmac.compare_digest(token_hash, _hash_secret(secret))


def auth_server_tls(server: AuthServer) -> "TlsPolicy":
    """How an auth server's certificate is checked: its pinned fingerprint, else the CA store unless turned off."""
    from infrahaus_proxmox import TlsPolicy

    if server.fingerprint:
        return TlsPolicy.pinned(server.fingerprint)
    if server.verify:
        return TlsPolicy.verified()
    return TlsPolicy.insecure()


async def verify_proxmox_login(
    server: AuthServer,
    userid: str,
    password: str,
    *,
    resolver: Resolver | None = None,
    request_timeout: float = 10.0,
) -> str:
    """Check credentials with the auth server's `/access/ticket`; return the userid Proxmox confirms.

    `resolver` is the outbound policy's (`NodeAccess.resolve_api`): the password goes only to an address it allows.
    The ticket is dropped: infrahaus keeps its own session. Raises `AuthenticationFailed` (one generic message),
    `TfaNotSupported`, or `AuthServerUnreachable`.
    """
    from infrahaus_proxmox import ProxmoxClient
    from infrahaus_proxmox.errors import ProxmoxError

    try:
        # Not idempotent in spirit (a login attempt counts): no retries.
        async with ProxmoxClient(
            server.url, None, tls=auth_server_tls(server), timeout=request_timeout, retries=0, resolver=resolver
        ) as client:
            ticket = await client.access.ticket(userid, password)
    except OutboundDeniedError as exc:
        logger.warning("auth server %s refused by the outbound policy: %s", server.name, exc.detail)
        raise AuthServerUnreachable("The authentication server could not be reached.") from None
    except ProxmoxError as exc:
        error = login_error(exc)
        if isinstance(error, AuthServerUnreachable):
            # The class says what broke (unreachable, TLS pin mismatch, timeout ...); the message is not needed here.
            logger.warning("auth server %s failed: %s", server.name, type(exc).__name__)
        raise error from None
    confirmed: str = ticket.username
    return confirmed
