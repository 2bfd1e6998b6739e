"""`/api/containers` write side: create, preflight, lifecycle, delete, retry; the container's operations, events,
live progress (SSE) and progress log.

Every accepted request answers 202 with the operation and a `Location` to it, through `dispatch` (see
`infrahaus_api.idempotency`): the operation row is committed before its job message is sent; if sending fails, the
worker's reconciler re-sends queued operations.
"""

import uuid
from typing import Annotated, Literal

from litestar import Controller, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent

from infrahaus_api.auth import CurrentUser
from infrahaus_api.errors import problem_spec
from infrahaus_api.etag import ETAG_WEAK
from infrahaus_api.idempotency import Dispatch, OperationSender
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES
from infrahaus_api.openapi import OptionalBodyOperation
from infrahaus_api.pagination import Cursor, Limit
from infrahaus_api.resources import AppResources
from infrahaus_api.sse import PROGRESS_STREAM_ITEM, LastEventId, ProgressStream, parse_last_event_id, stream_spec
from infrahaus_domain.containers.placement import PlacementService
from infrahaus_domain.containers.schemas import ContainerCreate, ContainerCreated, PreflightReport
from infrahaus_domain.containers.service import DEFAULT_SHUTDOWN_TIMEOUT, ContainerService
from infrahaus_domain.events.schemas import EventPage, EventType, LogPage
from infrahaus_domain.events.service import EventService
from infrahaus_domain.operations.schemas import OperationKind, OperationPage, OperationRead, ShutdownRequest
from infrahaus_domain.operations.service import OperationService

OperationStatusFilter = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ContainerController(Controller):
    path = "/containers"
    tags = ["containers"]

    @post(
        "",
        operation_id="createContainer",
        summary="Create a container",
        description=(
            "From a template and your choices; every field but `hostname` has a default (from the template, "
            "else built in). Answers 202 with the container and its `create` operation (`Location` names the "
            "operation): follow it with `GET /api/operations/{id}`, the container's progress stream, or the "
            "global event stream. With `node_id: auto` (or `placement`), infrahaus picks the node now: the answer "
            "names it, and the operation's `placement` and a `placed` event say why."
        ),
        status_code=202,
        responses={
            **UPSTREAM_RESPONSES,
            409: problem_spec(
                "`no_eligible_node` (placement: `placement` lists each node and why it was refused), "
                "`vmid_taken`, `no_node_configured`"
            ),
        },
    )
    async def create_container(
        self,
        current_user: CurrentUser,
        placement: PlacementService,
        dispatch: Dispatch,
        data: JSONBody[ContainerCreate],
    ) -> Response[ContainerCreated]:
        # Placement asks the nodes before the Idempotency-Key is claimed (no transaction waits on them), and not
        # again on a retry whose answer is kept.
        if replay := await dispatch.idempotency.peek(data):
            return replay
        placed = await placement.place(current_user.id, data)
        return await dispatch.accept(lambda: placement.accept(current_user.id, data, placed), request=data)

    @post(
        "/preflight",
        operation_id="preflightContainer",
        summary="Check a creation request without creating anything",
        description=(
            "Validates the request and checks it against the node (VMID, storage, bridge, OS image, the "
            "token's privileges) without changing anything; every problem found is reported. With `node_id: "
            "auto` (or `placement`), the checks are those of the node placement would pick, and `placement` lists "
            "every node with its figures and the reasons it would be skipped."
        ),
        status_code=200,
    )
    async def preflight_container(
        self, current_user: CurrentUser, placement: PlacementService, data: JSONBody[ContainerCreate]
    ) -> PreflightReport:
        return await placement.preflight(current_user.id, data)

    @post(
        "/{container_id:uuid}/start",
        operation_id="startContainer",
        summary="Start a stopped container",
        status_code=202,
        responses=UPSTREAM_RESPONSES,
    )
    async def start_container(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await dispatch.operation(lambda: containers.request_action(container_id, current_user.id, "start"))

    @post(
        "/{container_id:uuid}/stop",
        operation_id="stopContainer",
        summary="Stop a running container at once",
        status_code=202,
        responses=UPSTREAM_RESPONSES,
    )
    async def stop_container(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await dispatch.operation(lambda: containers.request_action(container_id, current_user.id, "stop"))

    @post(
        "/{container_id:uuid}/shutdown",
        operation_id="shutdownContainer",
        summary="Shut a running container down gracefully",
        description=(
            "Proxmox forces the stop after `timeout` seconds. The body is optional: without it (or without "
            "`timeout`) the stop is forced after 60 s."
        ),
        status_code=202,
        operation_class=OptionalBodyOperation,
        responses=UPSTREAM_RESPONSES,
    )
    async def shutdown_container(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
        data: JSONBody[ShutdownRequest] | None = None,
    ) -> Response[OperationRead]:
        params = {
            "timeout": data.timeout if data is not None and data.timeout is not None else DEFAULT_SHUTDOWN_TIMEOUT
        }
        return await dispatch.operation(
            lambda: containers.request_action(container_id, current_user.id, "shutdown", params=params), request=params
        )

    @post(
        "/{container_id:uuid}/restart",
        operation_id="restartContainer",
        summary="Restart a running container (Proxmox reboot)",
        status_code=202,
        responses=UPSTREAM_RESPONSES,
    )
    async def restart_container(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await dispatch.operation(lambda: containers.request_action(container_id, current_user.id, "restart"))

    @delete(
        "/{container_id:uuid}",
        operation_id="deleteContainer",
        summary="Delete a container",
        description=(
            "Stops the guest, destroys it with purge, then removes the record; a creation in progress is "
            "cancelled first. The operation keeps the container's id and ends with a final message."
        ),
        status_code=202,
    )
    async def delete_container(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        sender: OperationSender,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await sender.operation(lambda: containers.request_delete(container_id, current_user.id))

    @post(
        "/{container_id:uuid}/retry",
        operation_id="retryContainer",
        summary="Re-run a failed creation from its stored request",
        status_code=202,
    )
    async def retry_container(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await dispatch.operation(lambda: containers.request_retry(container_id, current_user.id))

    @get(
        "/{container_id:uuid}/operations",
        operation_id="listContainerOperations",
        summary="List a container's operations",
        description="Newest first.",
        opt=ETAG_WEAK,
    )
    async def list_container_operations(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        operations: OperationService,
        container_id: FromPath[uuid.UUID],
        status: OperationStatusFilter | None = None,
        kind: OperationKind | None = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> OperationPage:
        container = await containers.get_for_user(container_id, current_user.id)
        return await operations.page(
            current_user.id, container_id=container.id, status=status, kind=kind, limit=limit, cursor=cursor
        )

    @get(
        "/{container_id:uuid}/events",
        operation_id="listContainerEvents",
        summary="List a container's events (its audit trail)",
        description="Newest first, with the number of events of each type over the whole trail.",
        opt=ETAG_WEAK,
    )
    async def list_container_events(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        events: EventService,
        container_id: FromPath[uuid.UUID],
        type: Annotated[EventType | None, QueryParameter(description="Only events of this type.")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> EventPage:
        container = await containers.get_for_user(container_id, current_user.id)
        return await events.page(container.id, type=type, limit=limit, cursor=cursor)

    @get(
        "/{container_id:uuid}/progress",
        operation_id="streamContainerProgress",
        summary="Follow a container's progress (Server-Sent Events)",
        description=(
            "Replays the latest operation's events and log lines, then streams them live, and ends with a `done` "
            "item when that operation is over. Every item is an unnamed event (a browser's `onmessage` gets them "
            "all) whose `data` is one JSON object with a `type`: an audit event (`queued`, `step`, `created`, "
            "`failed`, ...; schema `EventRead`), a log line (`log`) or the end (`done`). The `id` of each item "
            "grows by one across events and log lines: reconnect with `Last-Event-ID` (a browser does it by "
            "itself) to continue without gaps or duplicates (anything but a decimal id there is a 400 "
            "`invalid_header`). The stream starts with a `retry:` hint and sends a "
            "comment every `INFRAHAUS_SSE_HEARTBEAT_SECONDS`. `done` repeats the last id; a reconnect with it "
            "answers 204, which stops a browser's EventSource. Generated SDKs buffer the whole body: stream it "
            "with an SSE client or `curl -N`."
        ),
        media_type="text/event-stream",
        responses={
            200: stream_spec(PROGRESS_STREAM_ITEM, "The stream; every `data` is one of the documented items."),
            204: ResponseSpec(data_container=None, description="Nothing after `Last-Event-ID`: the stream is over."),
        },
    )
    async def stream_container_progress(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        resources: AppResources,
        container_id: FromPath[uuid.UUID],
        last_event_id: LastEventId = None,
    ) -> Response[None] | ServerSentEvent:
        container = await containers.get_for_user(container_id, current_user.id)
        http = resources.settings.http
        stream = ProgressStream(
            container.id,
            last_event_id=parse_last_event_id(last_event_id),
            resources=resources,
            heartbeat=http.sse_heartbeat_seconds,
            retry_ms=http.sse_retry_ms,
        )
        if last_event_id is not None and await stream.finished():
            return Response(None, status_code=204)
        return ServerSentEvent(stream.__aiter__(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @get(
        "/{container_id:uuid}/logs",
        operation_id="getContainerLogs",
        summary="Read a container's progress log",
        description=(
            "The log buffer as JSON: the last 2000 lines, kept 48 h after the last write, optionally of one "
            "script. `after` continues from the last `id` received."
        ),
        opt=ETAG_WEAK,
    )
    async def get_container_logs(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        resources: AppResources,
        container_id: FromPath[uuid.UUID],
        script: Annotated[str | None, QueryParameter(max_length=64, description="Only lines of this script.")] = None,
        after: Annotated[int, QueryParameter(ge=0, description="Only lines with a greater id.")] = 0,
    ) -> LogPage:
        container = await containers.get_for_user(container_id, current_user.id)
        items = await resources.logbuffer.lines(container.id, after=after, script=script)
        return LogPage(items=items, last_id=items[-1].id if items else None)
