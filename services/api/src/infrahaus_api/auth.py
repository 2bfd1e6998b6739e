"""Authentication: server-side cookie sessions (with CSRF) and personal bearer tokens.

One middleware on the `/api` router authenticates every request except handlers marked `exclude_from_auth`;
handlers get the caller as the `current_user` dependency. Sessions are written only at login (never for anonymous
requests), get a fresh id at every login, and expire after an idle timeout and an absolute lifetime.
"""

import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.stores.base import Store
from litestar.types import ASGIApp

from infrahaus_api.errors import CsrfFailed
from infrahaus_api.resources import AppResources
from infrahaus_domain.models.users import User
from infrahaus_domain.ports import Invalidation
from infrahaus_domain.ports.local_cache import LocalCache
from infrahaus_domain.settings import SessionSettings
from infrahaus_domain.users.errors import SessionRequired
from infrahaus_domain.users.service import parse_token, token_matches

SESSION_COOKIE = "infrahaus_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Re-writing a session on every request would cost a store write each time; refresh its idle clock at most this often.
_TOUCH_INTERVAL = 60.0
# How long a process reuses a session or token it verified, without asking the store or the database again.
# Logout and revocation drop it from every process at once (`infrahaus_domain.ports.local_cache`); this is the
# bound when an invalidation is lost on the way (README, Production).
AUTH_CACHE_SECONDS = 10.0
SESSION_TOPIC = "auth.session"
TOKEN_TOPIC = "auth.token"  # noqa: S105 - a channel topic, not a secret


class CurrentUser(msgspec.Struct, kw_only=True, frozen=True):
    """The authenticated caller; every query of a feature service is scoped by `id`."""

    id: uuid.UUID
    auth_server: str
    userid: str
    display_name: str

    @classmethod
    def from_model(cls, user: User) -> "CurrentUser":
        return cls(id=user.id, auth_server=user.auth_server, userid=user.userid, display_name=user.display_name)


class SessionData(msgspec.Struct, kw_only=True):
    user: CurrentUser
    csrf_token: str
    created_at: float
    seen_at: float


class AuthInfo(msgspec.Struct, kw_only=True, frozen=True):
    """How the caller authenticated: a cookie session (with its id and CSRF token) or a bearer token."""

    kind: Literal["session", "token"]
    session_id: str | None = None
    session: SessionData | None = None


class SessionManager:
    """Server-side sessions in a Litestar store (Redis, or memory in the embedded mode)."""

    def __init__(
        self,
        store: Store,
        *,
        idle_seconds: int,
        absolute_seconds: int,
        clock: Callable[[], float] = time.time,
        local: "LocalCache[SessionData] | None" = None,
        invalidation: Invalidation | None = None,
        account_active: Callable[[uuid.UUID], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._idle = idle_seconds
        self._absolute = absolute_seconds
        self._clock = clock
        # Sessions this process read recently (no store round trip), dropped everywhere on logout.
        self._local = local
        self._invalidation = invalidation
        # Whether the user's Proxmox account is still active (`infrahaus_domain.users.accounts`), asked whenever
        # the session is read from the store rather than this process's memory.
        self._account_active = account_active

    def expires_at(self, data: SessionData) -> datetime:
        """When the session ends if not used again: idle expiry, capped by the absolute lifetime."""
        end = min(data.seen_at + self._idle, data.created_at + self._absolute)
        return datetime.fromtimestamp(end, UTC)

    def _ttl(self, data: SessionData, now: float) -> int:
        return max(1, int(min(self._idle, data.created_at + self._absolute - now)))

    async def create(self, user: CurrentUser, *, replaces: str | None = None) -> tuple[str, SessionData]:
        """A new session under a fresh id; the session named by `replaces` (pre-login cookie) is deleted."""
        if replaces:
            await self.delete(replaces)
        now = self._clock()
        data = SessionData(user=user, csrf_token=secrets.token_urlsafe(32), created_at=now, seen_at=now)
        session_id = secrets.token_urlsafe(32)
        await self._store.set(session_id, msgspec.json.encode(data), expires_in=self._ttl(data, now))
        return session_id, data

    async def load(self, session_id: str) -> SessionData | None:
        """The live session, its idle clock refreshed; None when unknown or expired (and then deleted)."""
        local = self._local
        data = local.get(session_id) if local is not None else None
        if data is None:
            stamp = local.stamp() if local is not None else None
            raw = await self._store.get(session_id)
            if raw is None:
                return None
            try:
                data = msgspec.json.decode(raw, type=SessionData)
            except msgspec.DecodeError:
                await self.delete(session_id)
                return None
            if self._account_active is not None and not await self._account_active(data.user.id):
                await self.delete(session_id)
                return None
            if local is not None and stamp is not None:
                local.put(session_id, data, stamp)
        now = self._clock()
        if now - data.seen_at > self._idle or now - data.created_at > self._absolute:
            await self.delete(session_id)
            return None
        if now - data.seen_at > _TOUCH_INTERVAL:
            # A copy: the cached object may be in use by a concurrent request of the same session.
            data = msgspec.structs.replace(data, seen_at=now)
            await self._store.set(session_id, msgspec.json.encode(data), expires_in=self._ttl(data, now))
            if local is not None:
                local.put(session_id, data, local.stamp())
        return data

    async def delete(self, session_id: str) -> None:
        """End the session in the store, then in every process's cache."""
        await self._store.delete(session_id)
        if self._invalidation is not None:
            await self._invalidation.publish(SESSION_TOPIC, session_id)

    def cookie(self, session_id: str, data: SessionData, *, settings: SessionSettings) -> Cookie:
        return Cookie(
            key=SESSION_COOKIE,
            value=session_id,
            max_age=max(1, int(data.created_at + self._absolute - self._clock())),
            path="/",
            httponly=True,
            secure=settings.cookie_secure,
            samesite=settings.cookie_samesite,
        )

    @staticmethod
    def clear_cookie(*, settings: SessionSettings) -> Cookie:
        return Cookie(
            key=SESSION_COOKIE,
            value="",
            max_age=0,
            expires=0,
            path="/",
            httponly=True,
            secure=settings.cookie_secure,
            samesite=settings.cookie_samesite,
        )


class AuthMiddleware(AbstractAuthenticationMiddleware):
    """Bearer token first (no CSRF), else the session cookie (CSRF header required on unsafe methods)."""

    def __init__(self, app: ASGIApp, *, resources: AppResources, **options: Any) -> None:
        super().__init__(app, **options)
        self.resources = resources

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        resources = self.resources
        authorization = connection.headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("Unsupported Authorization header: use `Bearer <token>`.")
            current = await authenticate_token(resources, token.strip())
            if current is None:
                raise _unauthorized("Invalid, expired or revoked token.")
            return AuthenticationResult(user=current, auth=AuthInfo(kind="token"))

        session_id = connection.cookies.get(SESSION_COOKIE)
        if not session_id:
            raise _unauthorized()
        sessions = session_manager(resources)
        data = await sessions.load(session_id)
        if data is None:
            raise _unauthorized("The session has expired; log in again.")
        if connection.scope.get("method", "GET") not in SAFE_METHODS:
            sent = connection.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), data.csrf_token.encode()):
                raise CsrfFailed(
                    f"Missing or wrong {CSRF_HEADER} header (use the csrf_token from login or /api/auth/me)."
                )
        return AuthenticationResult(user=data.user, auth=AuthInfo(kind="session", session_id=session_id, session=data))


def _unauthorized(detail: str | None = None) -> NotAuthorizedException:
    return NotAuthorizedException(detail, headers={"WWW-Authenticate": 'Bearer realm="infrahaus"'})


class VerifiedToken(msgspec.Struct, kw_only=True, frozen=True):
    """A token row as verified from the database, kept in this process for `AUTH_CACHE_SECONDS`."""

    user: CurrentUser
    token_hash: str
    expires_at: float | None


async def authenticate_token(resources: AppResources, token: str) -> CurrentUser | None:
    """The owner of a valid bearer token. A verification is kept in this process for `AUTH_CACHE_SECONDS`
    (revocation drops it in every process), so an unchanged token costs no round trip; the secret and the expiry
    are still checked on every request."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    lookup_id, secret = parsed
    local = resources.token_cache
    if (cached := local.get(lookup_id)) is not None:
        if not token_matches(cached.token_hash, secret):
            return None
        if cached.expires_at is None or cached.expires_at > time.time():
            known: CurrentUser = cached.user
            return known
    stamp = local.stamp()
    async with resources.sessionmaker() as db, db.begin():
        found = await resources.services(db).tokens.authenticate(token)
        if found is None:
            return None
        user, row = found
        verified = VerifiedToken(
            user=CurrentUser.from_model(user),
            token_hash=row.token_hash,
            expires_at=row.expires_at.timestamp() if row.expires_at else None,
        )
    local.put(lookup_id, verified, stamp)
    return verified.user


async def forget_token(resources: AppResources, lookup_id: str) -> None:
    """Drop a token's cached verification in every process; call it after its revocation committed."""
    await resources.ports.invalidation.publish(TOKEN_TOPIC, lookup_id)


def session_manager(resources: AppResources) -> SessionManager:
    async def account_active(user_id: uuid.UUID) -> bool:
        async with resources.sessionmaker() as db:
            return await resources.services(db).users.account_active(user_id)

    return SessionManager(
        resources.session_store,
        idle_seconds=resources.settings.sessions.idle_seconds,
        absolute_seconds=resources.settings.sessions.absolute_seconds,
        local=resources.session_cache,
        invalidation=resources.ports.invalidation,
        account_active=account_active,
    )


def session_only(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Guard of handlers a bearer token must not reach (creating tokens): only a cookie session passes."""
    auth = connection.scope.get("auth")
    if not isinstance(auth, AuthInfo) or auth.kind != "session":
        raise SessionRequired(
            "API tokens are created from a logged-in session only (POST /api/auth/login), not with a bearer token: "
            "a leaked token must not be able to make others that outlive its revocation."
        )


def provide_current_user(request: Request[Any, Any, Any]) -> CurrentUser:
    """The `current_user` dependency."""
    user = request.scope.get("user")
    if not isinstance(user, CurrentUser):
        raise NotAuthorizedException()
    return user


def provide_auth_info(request: Request[Any, Any, Any]) -> AuthInfo:
    """The `auth_info` dependency: how the caller authenticated."""
    auth = request.scope.get("auth")
    if not isinstance(auth, AuthInfo):
        raise NotAuthorizedException()
    return auth
