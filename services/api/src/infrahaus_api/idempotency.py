"""`Idempotency-Key` on creating POSTs: the `idempotency` dependency, used by a handler in two calls.

    if replay := await idempotency.replay(data):
        return replay
    ...create...
    return await idempotency.record(Response(created, status_code=201, headers={"Location": ...}))

`record` must run before the request's transaction commits (handlers that commit themselves call it first), so the
key and what it created commit together. Asking for the dependency documents the header on the operation.
"""

from typing import Annotated, Any, TypeVar

import msgspec
from litestar import MediaType, Request, Response
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import CurrentUser
from infrahaus_api.errors import PROBLEM_JSON
from infrahaus_domain.idempotency import NO_KEY, IdempotencyKeys, StoredResponse

T = TypeVar("T")

IdempotencyKeyHeader = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        max_length=255,
        description=(
            "Makes the request safe to retry. The same key and body within 24 h answers the first response again "
            "(status, body, `Location`) without doing anything twice, also while the first request is still "
            "running (it waits for it). The same key with another body or on another endpoint is a 422 "
            "`idempotency_key_reused`. Keys are per user; answers other than 2xx are not kept."
        ),
    ),
]


class Idempotency:
    """The `Idempotency-Key` of one request, scoped to the caller and the endpoint (method and path)."""

    def __init__(self, request: Request[Any, Any, Any], keys: IdempotencyKeys, user: CurrentUser, key: str | None):
        self._request = request
        self._keys = keys
        self._user = user
        self.key = key
        self._claim = NO_KEY

    async def replay(self, body: object = None) -> Response[Any] | None:
        """Claim the key for `body` (what the request asks for); the first answer when this is a retry, else None."""
        scope = f"{self._request.method} {self._request.url.path.rstrip('/')}"
        self._claim = await self._keys.claim(self._user.id, scope, self.key, body)
        stored = self._claim.replay
        if stored is None:
            return None
        return Response(
            stored.body,
            status_code=stored.status,
            headers={"Location": stored.location} if stored.location else None,
            media_type=PROBLEM_JSON if stored.status >= 400 else MediaType.JSON,
        )

    async def record(self, response: Response[T], *, replay_as: Response[Any] | None = None) -> Response[T]:
        """Keep `response` as the answer to replay (or `replay_as` instead, for an answer that may be shown only
        once) and return it unchanged."""
        kept = response if replay_as is None else replay_as
        status = kept.status_code or self._request.route_handler.status_code
        await self._keys.record(
            self._claim,
            StoredResponse(
                status=status, body=msgspec.to_builtins(kept.content), location=kept.headers.get("Location")
            ),
        )
        return response


def provide_idempotency(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    current_user: CurrentUser,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Idempotency:
    """The `idempotency` dependency (registered on the app)."""
    return Idempotency(request, IdempotencyKeys(db_session), current_user, idempotency_key)
