"""Day two on `/api/containers/{id}`: drift against a template revision, sync, snapshots (list, take, roll back,
delete) and the container's settings. Every change answers 202 with an operation, like the lifecycle actions."""

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter

from infrahaus_api.auth import CurrentUser
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.idempotency import Dispatch, OperationSender
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES
from infrahaus_api.openapi import OptionalBodyOperation
from infrahaus_domain.allowlist import whole
from infrahaus_domain.day_two.schemas import (
    ContainerSettings,
    ContainerSettingsUpdate,
    DriftReport,
    RollbackRequest,
    SnapshotCreate,
    SnapshotList,
    SyncRequest,
)
from infrahaus_domain.day_two.service import DayTwoService
from infrahaus_domain.operations.schemas import OperationRead

SnapshotPath = Annotated[
    str,
    PathParameter(
        min_length=2,
        max_length=40,
        pattern=whole(r"[A-Za-z][A-Za-z0-9_-]+"),
        description="The snapshot's name.",
    ),
]
RevisionQuery = Annotated[
    str | None,
    QueryParameter(
        pattern=whole(r"latest|[1-9][0-9]{0,8}"),
        description="Compare with `latest` or this revision number; by default with the revision the container was "
        "last brought to (created from, or synced to).",
    ),
]


class DayTwoController(Controller):
    path = "/containers/{container_id:uuid}"
    tags = ["containers"]

    @get(
        "/drift",
        operation_id="getContainerDrift",
        summary="Compare a container with a template revision",
        # Writes: a drift found for the first time queues `drift.detected` webhook deliveries.
        opt={**ETAG_WEAK, "transaction": True},
        description="Each template file (checksum, mode, owner; a `default` file is drift only when absent), package "
        "(installed, pinned version), script (digest as applied against the revision's) and Proxmox config value "
        "(cores, memory, swap, features, bridge) is `same`, `changed`, `missing` or `extra`, with a detail. Read in "
        "one `pct exec`; reused for `INFRAHAUS_DRIFT_CACHE_SECONDS` unless `refresh=true`. Drift found for the first "
        "time is announced to your webhooks (`drift.detected`).",
        responses=UPSTREAM_RESPONSES,
    )
    async def get_container_drift(
        self,
        current_user: CurrentUser,
        day_two: DayTwoService,
        container_id: FromPath[uuid.UUID],
        revision: RevisionQuery = None,
        refresh: Annotated[bool, QueryParameter(description="Compute it again instead of reusing it.")] = False,
    ) -> DriftReport:
        return await day_two.drift(container_id, current_user.id, revision, refresh=refresh)

    @post(
        "/sync",
        operation_id="syncContainer",
        summary="Sync a container with a template revision",
        description="202: an operation of kind `sync`. Config, files (by their policies), packages and scripts "
        "(only new or changed ones, and those "
        "named in `scripts`), through the creation's own steps. With `snapshot` (the default) a snapshot is taken "
        "first — file backups of what the sync changes where the storage cannot snapshot — and restored when a step "
        "fails: the operation then fails with `result.rolled_back: true` and `result.snapshot.method`.",
        status_code=202,
        operation_class=OptionalBodyOperation,
        responses=UPSTREAM_RESPONSES,
    )
    async def sync_container(
        self,
        current_user: CurrentUser,
        day_two: DayTwoService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
        data: JSONBody[SyncRequest] | None = None,
    ) -> Response[OperationRead]:
        body = data or SyncRequest()
        return await dispatch.operation(lambda: day_two.request_sync(container_id, current_user.id, body), request=body)

    @get(
        "/snapshots",
        operation_id="listContainerSnapshots",
        summary="List a container's snapshots",
        description="Its Proxmox snapshots, oldest first.",
        opt=ETAG_WEAK,
        responses=UPSTREAM_RESPONSES,
    )
    async def list_container_snapshots(
        self, current_user: CurrentUser, day_two: DayTwoService, container_id: FromPath[uuid.UUID]
    ) -> SnapshotList:
        return await day_two.snapshots(container_id, current_user.id)

    @post(
        "/snapshots",
        operation_id="createContainerSnapshot",
        summary="Take a snapshot",
        description="202: an operation of kind `snapshot_create`. Fails `snapshot_unsupported` where the container's "
        "storage cannot snapshot.",
        status_code=202,
        operation_class=OptionalBodyOperation,
    )
    async def create_container_snapshot(
        self,
        current_user: CurrentUser,
        day_two: DayTwoService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
        data: JSONBody[SnapshotCreate] | None = None,
    ) -> Response[OperationRead]:
        body = data or SnapshotCreate()
        return await dispatch.operation(
            lambda: day_two.request_snapshot(container_id, current_user.id, body), request=body
        )

    @post(
        "/snapshots/{name:str}/rollback",
        operation_id="rollbackContainerSnapshot",
        summary="Roll a container back to a snapshot",
        description="202: an operation of kind `snapshot_rollback`. Proxmox stops a running container hard to roll it "
        "back; it is started again when it was "
        "running (or as `start` says).",
        status_code=202,
        operation_class=OptionalBodyOperation,
    )
    async def rollback_container_snapshot(
        self,
        current_user: CurrentUser,
        day_two: DayTwoService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
        name: SnapshotPath,
        data: JSONBody[RollbackRequest] | None = None,
    ) -> Response[OperationRead]:
        body = data or RollbackRequest()
        return await dispatch.operation(
            lambda: day_two.request_rollback(container_id, current_user.id, name, body), request=body
        )

    @delete(
        "/snapshots/{name:str}",
        operation_id="deleteContainerSnapshot",
        summary="Delete a snapshot",
        description="202: an operation of kind `snapshot_delete`.",
        status_code=202,
    )
    async def delete_container_snapshot(
        self,
        current_user: CurrentUser,
        day_two: DayTwoService,
        sender: OperationSender,
        container_id: FromPath[uuid.UUID],
        name: SnapshotPath,
    ) -> Response[OperationRead]:
        return await sender.operation(lambda: day_two.request_snapshot_delete(container_id, current_user.id, name))

    @get("/settings", operation_id="getContainerSettings", summary="Get a container's settings", opt=ETAG_STRONG)
    async def get_container_settings(
        self, current_user: CurrentUser, day_two: DayTwoService, container_id: FromPath[uuid.UUID]
    ) -> ContainerSettings:
        return await day_two.settings_of(container_id, current_user.id)

    @patch(
        "/settings",
        operation_id="updateContainerSettings",
        summary="Change a container's settings",
        description="`sync_on_start`: a sync after every start made through infrahaus.",
    )
    async def update_container_settings(
        self,
        current_user: CurrentUser,
        day_two: DayTwoService,
        container_id: FromPath[uuid.UUID],
        data: JSONBody[ContainerSettingsUpdate],
    ) -> ContainerSettings:
        return await day_two.update_settings(container_id, current_user.id, data)
