"""`/api/operations`: the caller's long-running operations."""

import uuid

from litestar import Controller, get
from litestar.params import FromPath

from infrahaus_api.auth import CurrentUser
from infrahaus_api.containers.controller import OperationStatusFilter
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.pagination import Cursor, Limit
from infrahaus_domain.operations.schemas import OperationKind, OperationPage, OperationRead
from infrahaus_domain.operations.service import OperationService, to_operation_read


class OperationController(Controller):
    path = "/operations"
    tags = ["operations"]

    @get(
        "",
        operation_id="listOperations",
        summary="List your operations",
        description="Newest first.",
        opt=ETAG_WEAK,
    )
    async def list_operations(
        self,
        current_user: CurrentUser,
        operations: OperationService,
        status: OperationStatusFilter | None = None,
        kind: OperationKind | None = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> OperationPage:
        return await operations.page(current_user.id, status=status, kind=kind, limit=limit, cursor=cursor)

    @get(
        "/{operation_id:uuid}",
        operation_id="getOperation",
        summary="Get an operation",
        opt=ETAG_STRONG,
    )
    async def get_operation(
        self, current_user: CurrentUser, operations: OperationService, operation_id: FromPath[uuid.UUID]
    ) -> OperationRead:
        return to_operation_read(await operations.get_for_user(operation_id, current_user.id))
