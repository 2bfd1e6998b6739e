"""Creating POSTs: the one idempotency-and-dispatch mechanism every one of them declares.

A handler that creates something synchronously (201) asks for `idempotency` and uses it in two calls:

    if replay := await idempotency.replay(data):
        return replay
    return await idempotency.record(Response(created, status_code=201, headers={"Location": ...}))

A handler that accepts work (202 with an operation) asks for `dispatch` and hands it the domain call:

    return await dispatch.operation(lambda: containers.request_action(container_id, user.id, "start"))

`record` runs before the request's transaction commits, so the key and what it created commit together; `dispatch`
then commits and sends the operation's job (a lost send is re-sent by the reconciler). Asking for either dependency
documents the `Idempotency-Key` header on the operation. Non-creating requests that still start an operation (a
DELETE) ask for `sender`, which commits and sends without a key.
"""

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import MediaType, Request, Response
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import CurrentUser
from infrahaus_api.errors import PROBLEM_JSON
from infrahaus_api.resources import AppResources
from infrahaus_domain.idempotency import NO_KEY, IdempotencyKeys, StoredResponse
from infrahaus_domain.jobs import job_for_operation
from infrahaus_domain.models.containers import Operation
from infrahaus_domain.operations.schemas import OperationRead
from infrahaus_domain.operations.service import to_operation_read

logger = logging.getLogger("infrahaus.api.dispatch")

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
        self._claim = await self._keys.claim(self._user.id, self._scope, self.key, body)
        return self._response(self._claim.replay)

    async def peek(self, body: object = None) -> Response[Any] | None:
        """The first answer when this is a retry, read without claiming the key (`replay` claims it later): for a
        handler that asks nodes before its transaction's writes and must not ask them again on a retry."""
        return self._response(await self._keys.stored(self._user.id, self._scope, self.key, body))

    @property
    def _scope(self) -> str:
        return f"{self._request.method} {self._request.url.path.rstrip('/')}"

    @staticmethod
    def _response(stored: StoredResponse | None) -> Response[Any] | None:
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


def operation_location(operation_id: uuid.UUID) -> str:
    """Where a client follows an accepted operation."""
    return f"/api/operations/{operation_id}"


class OperationSender:
    """Answers 202 for a queued operation: commits the request's transaction, then sends the operation's job."""

    def __init__(self, session: AsyncSession, resources: AppResources) -> None:
        self._session = session
        self._resources = resources

    def accepted(self, op: Operation, body: T) -> Response[T]:
        return Response(body, status_code=202, headers={"Location": operation_location(op.id)})

    async def send(self, op: Operation) -> None:
        """Commit, then send the operation's job; a failed send is left to the reconciler (it re-sends queued
        operations whose message never ran)."""
        await self.send_all([op])

    async def send_all(self, ops: Sequence[Operation]) -> None:
        """Commit, then send each operation's job (a bulk action's released operations)."""
        jobs = [(op.id, *job_for_operation(op.kind, op.id)) for op in ops]
        await self._session.commit()
        if self._resources.job_queue is None:
            return
        for op_id, job, payload in jobs:
            try:
                await self._resources.job_queue.enqueue(job, payload)
            except Exception:
                logger.warning("sending job %s for operation %s failed; the reconciler re-sends it", job.name, op_id)

    async def operation(self, start: Callable[[], Awaitable[Operation]]) -> Response[OperationRead]:
        """Run the domain call that queues an operation and answer 202 with it."""
        op = await start()
        response = self.accepted(op, to_operation_read(op))
        await self.send(op)
        return response


class Dispatch:
    """`OperationSender` behind an `Idempotency-Key`: a retry with the key answers the first operation again (instead
    of a 409 `container_busy`), and the 202 is kept in the same transaction as the operation."""

    def __init__(self, idempotency: "Idempotency", sender: OperationSender) -> None:
        self.idempotency = idempotency
        self.sender = sender

    async def operation(
        self, start: Callable[[], Awaitable[Operation]], *, request: object = None
    ) -> Response[OperationRead]:
        """Queue an operation (`request` is what the body asks for, compared on a retry) and answer 202 with it."""
        return await self.accept(_with_operation_read(start), request=request)

    async def accept(
        self, start: Callable[[], Awaitable[tuple[T, Operation]]], *, request: object = None
    ) -> Response[T]:
        """Like `operation`, for a domain call that answers with its own body next to the operation it queued."""
        if replay := await self.idempotency.replay(request):
            return replay
        body, op = await start()
        response = await self.idempotency.record(self.sender.accepted(op, body))
        await self.sender.send(op)
        return response

    async def accept_many(
        self,
        start: Callable[[], Awaitable[tuple[T, Sequence[Operation]]]],
        *,
        location: Callable[[T], str],
        request: object = None,
    ) -> Response[T]:
        """Like `accept`, for a domain call that queues several operations (a bulk action): answers 202 with its body
        and `Location: location(body)`, and sends the jobs of `ops` after the commit."""
        if replay := await self.idempotency.replay(request):
            return replay
        body, ops = await start()
        response = await self.idempotency.record(Response(body, status_code=202, headers={"Location": location(body)}))
        await self.sender.send_all(ops)
        return response


def _with_operation_read(
    start: Callable[[], Awaitable[Operation]],
) -> Callable[[], Awaitable[tuple[OperationRead, Operation]]]:
    async def run() -> tuple[OperationRead, Operation]:
        op = await start()
        return to_operation_read(op), op

    return run


def provide_sender(db_session: AsyncSession, resources: AppResources) -> OperationSender:
    """The `sender` dependency."""
    return OperationSender(db_session, resources)


def provide_dispatch(idempotency: Idempotency, sender: OperationSender) -> Dispatch:
    """The `dispatch` dependency (documents `Idempotency-Key` through `idempotency`)."""
    return Dispatch(idempotency, sender)


def provide_idempotency(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    current_user: CurrentUser,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Idempotency:
    """The `idempotency` dependency (registered on the app)."""
    return Idempotency(request, IdempotencyKeys(db_session), current_user, idempotency_key)
