"""`Idempotency-Key` of creating requests: the first answer to a key is kept 24 hours and replayed.

A key belongs to one user and one request. The first request with a key claims it by inserting a row in its own
transaction and records its answer in the same transaction before it commits, so the key and what it created are
committed (or rolled back) together: an answer that is not 2xx rolls the claim back and the key can be used again.
A concurrent request with the same key waits on the unique (user, key) index until the first one commits, then
replays its answer. The same key with another body, or on another endpoint (`scope`), is refused with
`IdempotencyKeyReusedError` (422): a key names one request, never a family of them.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.errors import ConflictError, FieldError, ValidationFailed
from infrahaus_domain.models.idempotency import IdempotencyKey

IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyReusedError(ValidationFailed):
    """The `Idempotency-Key` was already used with a different request body or on another endpoint."""

    code = "idempotency_key_reused"

    def __init__(self, message: str = "Already used with a different request body.") -> None:
        super().__init__(
            [FieldError(field="Idempotency-Key", message=message)],
            "This Idempotency-Key was already used with a different request.",
        )


class IdempotencyKeyInProgressError(ConflictError):
    """The first request with this key has not finished yet (only seen when it could not be waited for)."""

    code = "idempotency_key_in_progress"


@dataclass(frozen=True)
class StoredResponse:
    """The first answer to a key: what a replay sends again."""

    status: int
    body: dict[str, Any]
    location: str | None


@dataclass(frozen=True)
class Claim:
    """The outcome of `IdempotencyKeys.claim`: a `replay` to send, or the claimed `row` to `record` the answer in."""

    replay: StoredResponse | None
    row: IdempotencyKey | None


NO_KEY = Claim(replay=None, row=None)


def request_hash(scope: str, body: object) -> str:
    """SHA-256 of the scope and the canonical JSON of the body (key order does not matter)."""
    canonical = json.dumps(msgspec.to_builtins(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{scope}\n{canonical}".encode()).hexdigest()


class IdempotencyKeys:
    """Claims and records keys in the caller's session. Never commits: the caller's unit of work does."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, user_id: UUID, scope: str, key: str | None, body: object) -> Claim:
        """Claim `key` for this request, or find the answer to replay.

        `scope` names the endpoint (`POST /api/nodes`, `POST /api/containers/<id>/start`); `body` is what the
        request asks for (anything msgspec turns into JSON). Without a key, nothing is claimed. Raises
        `ValidationFailed` for a key that is empty, longer than 255 characters or not printable ASCII,
        `IdempotencyKeyReusedError` for another body or endpoint, and `IdempotencyKeyInProgressError` when the first
        request is still running.
        """
        if key is None:
            return NO_KEY
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed([FieldError(field="Idempotency-Key", message="Must be 1-255 characters.")])
        if not (key.isascii() and key.isprintable()):
            # PostgreSQL refuses NUL in text; other control characters would only hide in logs.
            raise ValidationFailed([FieldError(field="Idempotency-Key", message="Must be printable ASCII.")])
        digest = request_hash(scope, body)
        existing = await self._row(user_id, key)
        if existing is not None:
            if existing.created_at >= datetime.now(UTC) - IDEMPOTENCY_TTL:
                return Claim(replay=_replay(existing, scope, digest), row=None)
            # A statement, not session.delete: a concurrent request may remove the same expired row first.
            await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id))
            self.session.expunge(existing)
        row = IdempotencyKey(user_id=user_id, key=key, scope=scope, request_hash=digest)
        try:
            # A concurrent request with the same key waits on the unique index until the first one finishes.
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
        except IntegrityError:
            existing = await self._row(user_id, key)
            if existing is None:
                raise IdempotencyKeyInProgressError(
                    "A request with this Idempotency-Key is in progress; retry shortly."
                ) from None
            return Claim(replay=_replay(existing, scope, digest), row=None)
        return Claim(replay=None, row=row)

    async def stored(self, user_id: UUID, scope: str, key: str | None, body: object) -> StoredResponse | None:
        """The kept answer for `key`, read without claiming anything (None: no key, none kept yet or expired); for
        work that must not run inside the claim's transaction and must not run again on a retry (placement asks
        nodes). Raises like `claim` for another body or endpoint; a request still in progress is left to `claim`."""
        if key is None:
            return None
        existing = await self._row(user_id, key)
        if existing is None or existing.created_at < datetime.now(UTC) - IDEMPOTENCY_TTL:
            return None
        if existing.response_body is None:
            return None
        return _replay(existing, scope, request_hash(scope, body))

    async def record(self, claim: Claim, response: StoredResponse) -> None:
        """Keep the first answer of a claimed key (nothing happens without a claimed row)."""
        if claim.row is None:
            return
        claim.row.response_status = response.status
        claim.row.response_body = response.body
        claim.row.location = response.location
        await self.session.flush()

    async def _row(self, user_id: UUID, key: str) -> IdempotencyKey | None:
        return await self.session.scalar(
            select(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .execution_options(populate_existing=True)
        )


def _replay(row: IdempotencyKey, scope: str, digest: str) -> StoredResponse:
    if row.scope != scope:
        raise IdempotencyKeyReusedError("Already used on another endpoint.")
    if row.request_hash != digest:
        raise IdempotencyKeyReusedError()
    if row.response_body is None:
        raise IdempotencyKeyInProgressError("A request with this Idempotency-Key is in progress; retry shortly.")
    return StoredResponse(status=row.response_status, body=row.response_body, location=row.location)
