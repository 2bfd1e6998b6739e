"""`/api/auth`: login, logout, me, and personal API tokens."""

import uuid
from datetime import timedelta
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import CacheControlHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import (
    SESSION_COOKIE,
    AuthInfo,
    CurrentUser,
    forget_token,
    session_manager,
    session_only,
)
from infrahaus_api.errors import problem_response, problem_spec
from infrahaus_api.etag import ETAG_WEAK
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.login_limit import LoginThrottle, client_address, trusted_networks
from infrahaus_api.resources import AppResources
from infrahaus_domain.errors import FieldError, UpstreamUnavailable, ValidationFailed
from infrahaus_domain.reads import to_read
from infrahaus_domain.users.errors import InvalidCredentials
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

# Answers that carry a secret (CSRF token, API token) are never kept by a browser or a proxy cache.
NO_STORE = CacheControlHeader(no_store=True)


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
        cache_control=NO_STORE,
        responses={
            429: problem_spec("Too many login attempts; see Retry-After"),
            503: problem_spec("The authentication server is unreachable"),
        },
    )
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginRequest], resources: AppResources, users: UserService
    ) -> Response[SessionInfo]:
        settings = resources.settings
        server = settings.auth.server(data.server)
        if server is None:
            if data.server is not None:
                raise ValidationFailed(
                    [FieldError(field="server", message="No authentication server has this name.", code="not_allowed")]
                )
            raise UpstreamUnavailable("No authentication server is configured.", code="auth_not_configured")
        throttle = LoginThrottle(resources.ports.cache, settings)
        client = client_address(request, trusted_networks(settings))
        await throttle.check(client, data.userid)
        try:
            userid = await verify_proxmox_login(
                server, data.userid, data.password, resolver=resources.access.resolve_api
            )
        except InvalidCredentials:
            await throttle.failed(client, data.userid)
            raise
        await throttle.succeeded(data.userid)
        user = await users.record_login(server.name, userid)
        sessions = session_manager(resources)
        session_id, session = await sessions.create(
            CurrentUser.from_model(user), replaces=request.cookies.get(SESSION_COOKIE)
        )
        body = SessionInfo(
            user=to_read(user, UserRead),
            auth="session",
            csrf_token=session.csrf_token,
            expires_at=sessions.expires_at(session),
        )
        return Response(body, cookies=[sessions.cookie(session_id, session, settings=settings.sessions)])

    @post(
        "/logout",
        operation_id="logout",
        summary="End the cookie session",
        status_code=204,
        # The handler returns a Response (to clear the cookie); document the 204 without a body.
        responses={204: ResponseSpec(data_container=None, description="Logged out; the session cookie is cleared")},
    )
    async def logout(self, auth_info: AuthInfo, resources: AppResources) -> Response[None]:
        if auth_info.session_id is not None:
            await session_manager(resources).delete(auth_info.session_id)
        cookie = session_manager(resources).clear_cookie(settings=resources.settings.sessions)
        return Response(None, status_code=204, cookies=[cookie])

    @get("/me", operation_id="getCurrentUser", summary="Who is logged in, and the CSRF token", cache_control=NO_STORE)
    async def me(
        self, current_user: CurrentUser, auth_info: AuthInfo, resources: AppResources, users: UserService
    ) -> SessionInfo:
        user = await users.get(current_user.id)
        session = auth_info.session
        return SessionInfo(
            user=to_read(user, UserRead),
            auth=auth_info.kind,
            csrf_token=session.csrf_token if session else None,
            expires_at=session_manager(resources).expires_at(session) if session else None,
        )

    @post(
        "/tokens",
        operation_id="createApiToken",
        summary="Create a personal API token (shown once)",
        description=(
            "Only a cookie session (a person who logged in) may create tokens: a request authenticated by a bearer "
            "token is a 403 `session_required`, so revoking a leaked token leaves nothing it made behind. "
            "Without `expires_at` the token ends after the server's default lifetime (90 days unless configured); "
            "`expires_at: null` asks for one that never expires. "
            "The secret is in this answer only and is never stored. So a retry with the same `Idempotency-Key` "
            "and body does not answer it again: it is a 409 `secret_shown_once` naming the token already created "
            "(revoke it if its secret was lost, then create another). No second token is created."
        ),
        responses={
            403: problem_spec("`session_required`: a bearer token cannot create tokens; `csrf_failed`"),
            409: problem_spec("`secret_shown_once`: a retry of a creation already answered"),
        },
        cache_control=NO_STORE,
        # A guard runs before the body is read: a bearer request is refused whatever it sends.
        guards=[session_only],
    )
    async def create_token(
        self,
        data: JSONBody[ApiTokenCreate],
        current_user: CurrentUser,
        tokens: ApiTokenService,
        idempotency: Idempotency,
        resources: AppResources,
    ) -> Response[ApiTokenCreated]:
        if replay := await idempotency.replay(data):
            return replay
        lifetime = timedelta(days=resources.settings.auth.token_lifetime_days)
        row, token = await tokens.issue(current_user.id, data.name, data.expires_at, default_lifetime=lifetime)
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

    @get(
        "/tokens",
        operation_id="listApiTokens",
        summary="List your active API tokens",
        opt=ETAG_WEAK,
    )
    async def list_tokens(self, current_user: CurrentUser, tokens: ApiTokenService) -> ApiTokenList:
        rows = await tokens.list_active(current_user.id)
        return ApiTokenList(items=[to_read(r, ApiTokenRead) for r in rows])

    @delete("/tokens/{token_id:uuid}", operation_id="revokeApiToken", summary="Revoke an API token")
    async def revoke_token(
        self,
        token_id: FromPath[uuid.UUID],
        current_user: CurrentUser,
        tokens: ApiTokenService,
        resources: AppResources,
        db_session: AsyncSession,
    ) -> None:
        lookup_id = await tokens.revoke(current_user.id, token_id)
        # Commit before dropping the cached verification, or a request in between could cache it again.
        await db_session.commit()
        await forget_token(resources, lookup_id)
