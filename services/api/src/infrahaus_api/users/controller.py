"""`/api/auth`: login, logout, me, and personal API tokens."""

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import (
    SESSION_COOKIE,
    AuthInfo,
    CurrentUser,
    LoginRateLimiter,
    session_manager,
    token_cache_key,
)
from infrahaus_api.errors import problem_response, problem_spec
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.resources import AppResources
from infrahaus_domain.errors import FieldError, UpstreamUnavailable, ValidationFailed
from infrahaus_domain.models.users import ApiToken, User
from infrahaus_domain.ports import Ports
from infrahaus_domain.users.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    ApiTokenRead,
    LoginRequest,
    SessionInfo,
    UserRead,
)
from infrahaus_domain.users.service import ApiTokenService, UserService, verify_proxmox_login


def _user_read(user: User | CurrentUser, created_at: Any = None, last_login_at: Any = None) -> UserRead:
    return UserRead(
        id=user.id,
        auth_server=user.auth_server,
        userid=user.userid,
        display_name=user.display_name,
        created_at=getattr(user, "created_at", created_at),
        last_login_at=getattr(user, "last_login_at", last_login_at),
    )


def _token_read(token: ApiToken) -> ApiTokenRead:
    return ApiTokenRead(
        id=token.id,
        name=token.name,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
    )


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post(
        "/login",
        operation_id="login",
        summary="Log in with Proxmox credentials",
        status_code=200,
        exclude_from_auth=True,
        security=[{}],
        responses={
            429: problem_spec("Too many login attempts; see Retry-After"),
            503: problem_spec("The authentication server is unreachable"),
        },
    )
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginRequest], db_session: AsyncSession
    ) -> Response[SessionInfo]:
        resources: AppResources = request.app.state.resources
        settings = resources.settings
        server = settings.auth_server(data.server)
        if server is None:
            if data.server is not None:
                raise ValidationFailed([FieldError(field="server", message="unknown auth server")])
            raise UpstreamUnavailable("No authentication server is configured.", code="auth_not_configured")
        limiter = LoginRateLimiter(resources.ports.cache, settings)
        await limiter.hit(request.client.host if request.client else "unknown", data.userid)
        userid = await verify_proxmox_login(server, data.userid, data.password)
        await limiter.succeeded(data.userid)
        user = await UserService(session=db_session).record_login(server.name, userid)
        sessions = session_manager(resources)
        session_id, session = await sessions.create(
            CurrentUser.from_model(user), replaces=request.cookies.get(SESSION_COOKIE)
        )
        body = SessionInfo(
            user=_user_read(user),
            auth="session",
            csrf_token=session.csrf_token,
            expires_at=sessions.expires_at(session),
        )
        return Response(body, cookies=[sessions.cookie(session_id, session, secure=settings.cookie_secure)])

    @post(
        "/logout",
        operation_id="logout",
        summary="End the cookie session",
        status_code=204,
        # The handler returns a Response (to clear the cookie); document the 204 without a body.
        responses={204: ResponseSpec(data_container=None, description="Logged out; the session cookie is cleared")},
    )
    async def logout(self, request: Request[Any, Any, Any], auth_info: AuthInfo) -> Response[None]:
        resources: AppResources = request.app.state.resources
        if auth_info.session_id is not None:
            await session_manager(resources).delete(auth_info.session_id)
        cookie = session_manager(resources).clear_cookie(secure=resources.settings.cookie_secure)
        return Response(None, status_code=204, cookies=[cookie])

    @get("/me", operation_id="getCurrentUser", summary="Who is logged in, and the CSRF token")
    async def me(
        self, request: Request[Any, Any, Any], current_user: CurrentUser, auth_info: AuthInfo, db_session: AsyncSession
    ) -> SessionInfo:
        user = await UserService(session=db_session).get(current_user.id)
        session = auth_info.session
        return SessionInfo(
            user=_user_read(user),
            auth=auth_info.kind,
            csrf_token=session.csrf_token if session else None,
            expires_at=session_manager(request.app.state.resources).expires_at(session) if session else None,
        )

    @post(
        "/tokens",
        operation_id="createApiToken",
        summary="Create a personal API token (shown once)",
        description=(
            "The secret is in this answer only and is never stored. So a retry with the same `Idempotency-Key` "
            "and body does not answer it again: it is a 409 `secret_shown_once` naming the token already created "
            "(revoke it if its secret was lost, then create another). No second token is created."
        ),
        responses={409: problem_spec("`secret_shown_once`: a retry of a creation already answered")},
    )
    async def create_token(
        self,
        data: JSONBody[ApiTokenCreate],
        current_user: CurrentUser,
        db_session: AsyncSession,
        idempotency: Idempotency,
    ) -> Response[ApiTokenCreated]:
        if replay := await idempotency.replay(data):
            return replay
        row, token = await ApiTokenService(session=db_session).issue(current_user.id, data.name, data.expires_at)
        created = ApiTokenCreated(
            id=row.id, name=row.name, token=token, created_at=row.created_at, expires_at=row.expires_at
        )
        # What a replay answers: the token's id, never its secret (which is not stored anywhere).
        shown_once = problem_response(
            409,
            "secret_shown_once",
            f"API token {row.id} was already created with this Idempotency-Key and its secret shown once; "
            f"revoke it (DELETE /api/auth/tokens/{row.id}) if the secret was lost, then create another.",
        )
        return await idempotency.record(Response(created, status_code=201), replay_as=shown_once)

    @get("/tokens", operation_id="listApiTokens", summary="List your active API tokens")
    async def list_tokens(self, current_user: CurrentUser, db_session: AsyncSession) -> ApiTokenList:
        rows = await ApiTokenService(session=db_session).list_active(current_user.id)
        return ApiTokenList(items=[_token_read(r) for r in rows])

    @delete("/tokens/{token_id:uuid}", operation_id="revokeApiToken", summary="Revoke an API token")
    async def revoke_token(
        self, token_id: FromPath[uuid.UUID], current_user: CurrentUser, db_session: AsyncSession, ports: Ports
    ) -> None:
        lookup_id = await ApiTokenService(session=db_session).revoke(current_user.id, token_id)
        # Commit before dropping the cached verification, or a request in between could cache it again.
        await db_session.commit()
        await ports.cache.delete(token_cache_key(lookup_id))
