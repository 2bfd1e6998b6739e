"""Bulk actions: `POST /api/containers/bulk` queues one action on many containers as a batch; `/api/batches` reads
and cancels batches."""

import uuid

from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody

from infrahaus_api.auth import CurrentUser
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.idempotency import Dispatch
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES
from infrahaus_api.pagination import Cursor, Limit
from infrahaus_domain.batches.schemas import BatchPage, BatchRead, BulkRequest
from infrahaus_domain.batches.service import BatchService


def batch_location(batch: BatchRead) -> str:
    return f"/api/batches/{batch.id}"


class BatchController(Controller):
    path = "/"
    tags = ["batches"]

    @post(
        "/containers/bulk",
        operation_id="bulkContainerAction",
        summary="Run one action on many containers",
        description=(
            "`start`, `stop`, `shutdown`, `restart`, `delete` or `sync` on the containers named in `container_ids`, "
            "or on those a `selector` matches (exactly one of both). Each container gets an operation of its own under "
            "the rules of the single action; a container they refuse (another operation queued or running, the wrong "
            "state, not yours) is listed as skipped with the problem code. `max_parallel` bounds how many of the "
            "batch's operations run at once across all workers: the others wait queued and start as earlier ones end. "
            "Answers 202 with the batch (`Location` names it)."
        ),
        status_code=202,
        responses=UPSTREAM_RESPONSES,
    )
    async def bulk_container_action(
        self, current_user: CurrentUser, batches: BatchService, dispatch: Dispatch, data: JSONBody[BulkRequest]
    ) -> Response[BatchRead]:
        return await dispatch.accept_many(
            lambda: batches.request(current_user.id, data), location=batch_location, request=data
        )

    @get(
        "/batches",
        operation_id="listBatches",
        summary="List your bulk actions",
        description="Newest first.",
        opt=ETAG_WEAK,
    )
    async def list_batches(
        self, current_user: CurrentUser, batches: BatchService, limit: Limit = 50, cursor: Cursor = None
    ) -> BatchPage:
        return await batches.page(current_user.id, limit=limit, cursor=cursor)

    @get(
        "/batches/{batch_id:uuid}",
        operation_id="getBatch",
        summary="Get a bulk action with its operations",
        description="Counts by status, and every container's operation or why it was skipped.",
        opt=ETAG_STRONG,
    )
    async def get_batch(
        self, current_user: CurrentUser, batches: BatchService, batch_id: FromPath[uuid.UUID]
    ) -> BatchRead:
        return await batches.get_for_user(batch_id, current_user.id)

    @post(
        "/batches/{batch_id:uuid}/cancel",
        operation_id="cancelBatch",
        summary="Cancel what a bulk action has not started",
        description=(
            "Every operation of the batch still queued (waiting for a slot or for a worker) is cancelled; running "
            "ones finish. Cancelling a finished batch changes nothing."
        ),
        status_code=200,
    )
    async def cancel_batch(
        self, current_user: CurrentUser, batches: BatchService, batch_id: FromPath[uuid.UUID]
    ) -> BatchRead:
        return await batches.cancel(batch_id, current_user.id)
