"""`/api/containers` write side: create, preflight, lifecycle, delete, retry; the container's operations, events,
live progress (SSE) and progress log.

Every accepted request answers 202 with the operation and a `Location` to it. The operation row is committed
before its job message is sent; if sending fails, the worker's reconciler re-sends queued operations.
"""

import logging
import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter
from litestar.response import ServerSentEvent
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import CurrentUser
from infrahaus_api.containers.resources import ContainerResources
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES
from infrahaus_api.openapi import OptionalBodyOperation
from infrahaus_api.resources import AppResources
from infrahaus_api.sse import ProgressStream, parse_last_event_id
from infrahaus_domain.containers.preflight import PreflightService
from infrahaus_domain.containers.schemas import ContainerCreate, ContainerCreated, PreflightReport
from infrahaus_domain.containers.service import DEFAULT_SHUTDOWN_TIMEOUT, ContainerService
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.events.schemas import EventPage, LogPage
from infrahaus_domain.events.service import EventService
from infrahaus_domain.jobs import job_for_operation
from infrahaus_domain.models.containers import Operation
from infrahaus_domain.operations.schemas import OperationKind, OperationPage, OperationRead, ShutdownRequest
from infrahaus_domain.operations.service import OperationService, to_operation_read
from infrahaus_domain.ports import Ports
from infrahaus_domain.vmids.service import VmidService

logger = logging.getLogger("infrahaus.api.containers")

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size (default 50, at most 500).")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]
OperationStatusFilter = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def provide_container_resources(state: State) -> ContainerResources:
    resources: ContainerResources = state.containers
    return resources


def provide_events(db_session: AsyncSession, container_resources: ContainerResources) -> EventService:
    return EventService(db_session, logbuffer=container_resources.logbuffer)


def provide_operations(db_session: AsyncSession, events: EventService) -> OperationService:
    return OperationService(db_session, events=events)


def provide_containers(
    db_session: AsyncSession, events: EventService, operations: OperationService, secret_box: SecretBox
) -> ContainerService:
    return ContainerService(db_session, events=events, operations=operations, box=secret_box)


def provide_vmids(db_session: AsyncSession, secret_box: SecretBox, ports: Ports) -> VmidService:
    return VmidService(db_session, cache=ports.cache, box=secret_box)


CONTAINER_DEPENDENCIES = {
    "container_resources": Provide(provide_container_resources, sync_to_thread=False),
    "events": Provide(provide_events, sync_to_thread=False),
    "operations": Provide(provide_operations, sync_to_thread=False),
    "containers": Provide(provide_containers, sync_to_thread=False),
}


async def commit_and_send(db_session: AsyncSession, resources: ContainerResources, op: Operation) -> None:
    """Commit the request's transaction, then send the operation's job (a lost send is re-sent by the reconciler)."""
    job, payload = job_for_operation(op.kind, op.id)
    await db_session.commit()
    if resources.job_queue is None:
        return
    try:
        await resources.job_queue.enqueue(job, payload)
    except Exception:
        logger.warning("sending job %s for operation %s failed; the reconciler re-sends it", job.name, op.id)


def accepted(op: Operation) -> Response[OperationRead]:
    return Response(to_operation_read(op), status_code=202, headers={"Location": f"/api/operations/{op.id}"})


async def accept_operation(
    db_session: AsyncSession, resources: ContainerResources, idempotency: Idempotency, op: Operation
) -> Response[OperationRead]:
    """The 202 for a queued operation: kept for its `Idempotency-Key` in the same transaction, then committed and
    its job sent. A retry with the key answers this operation again, instead of a 409 `container_busy`."""
    response = await idempotency.record(accepted(op))
    await commit_and_send(db_session, resources, op)
    return response


class ContainerController(Controller):
    path = "/containers"
    tags = ["containers"]
    dependencies = {**CONTAINER_DEPENDENCIES, "vmids": Provide(provide_vmids, sync_to_thread=False)}

    @post(
        "",
        operation_id="createContainer",
        summary="Create a container from a template and choices (202: follow the operation or the progress stream)",
        status_code=202,
        responses=UPSTREAM_RESPONSES,
    )
    async def create_container(
        self,
        current_user: CurrentUser,
        db_session: AsyncSession,
        containers: ContainerService,
        vmids: VmidService,
        container_resources: ContainerResources,
        idempotency: Idempotency,
        data: JSONBody[ContainerCreate],
    ) -> Response[ContainerCreated]:
        result = await containers.create(current_user.id, data, vmids=vmids, idempotency_key=idempotency.key)
        body = msgspec.convert(result.body, ContainerCreated, strict=False)
        headers = {"Location": result.location} if result.location else {}
        if result.replayed:
            return Response(body, status_code=result.status, headers=headers)
        await commit_and_send(db_session, container_resources, await _operation(db_session, result.operation_id))
        return Response(body, status_code=202, headers=headers)

    @post(
        "/preflight",
        operation_id="preflightContainer",
        summary="Check a creation request against the node without touching anything; reports every problem",
        status_code=200,
    )
    async def preflight_container(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        vmids: VmidService,
        secret_box: SecretBox,
        data: JSONBody[ContainerCreate],
    ) -> PreflightReport:
        return await PreflightService(containers, vmids, secret_box).run(current_user.id, data)

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
        db_session: AsyncSession,
        containers: ContainerService,
        container_resources: ContainerResources,
        idempotency: Idempotency,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await _action(
            db_session, containers, container_resources, idempotency, current_user, container_id, "start"
        )

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
        db_session: AsyncSession,
        containers: ContainerService,
        container_resources: ContainerResources,
        idempotency: Idempotency,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await _action(
            db_session, containers, container_resources, idempotency, current_user, container_id, "stop"
        )

    @post(
        "/{container_id:uuid}/shutdown",
        operation_id="shutdownContainer",
        summary="Shut a running container down gracefully; Proxmox forces the stop after `timeout` seconds",
        description="The body is optional: without it (or without `timeout`) the stop is forced after 60 s.",
        status_code=202,
        operation_class=OptionalBodyOperation,
        responses=UPSTREAM_RESPONSES,
    )
    async def shutdown_container(
        self,
        current_user: CurrentUser,
        db_session: AsyncSession,
        containers: ContainerService,
        container_resources: ContainerResources,
        idempotency: Idempotency,
        container_id: FromPath[uuid.UUID],
        data: JSONBody[ShutdownRequest] | None = None,
    ) -> Response[OperationRead]:
        timeout = data.timeout if data is not None and data.timeout is not None else DEFAULT_SHUTDOWN_TIMEOUT
        params = {"timeout": timeout}
        return await _action(
            db_session, containers, container_resources, idempotency, current_user, container_id, "shutdown", params
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
        db_session: AsyncSession,
        containers: ContainerService,
        container_resources: ContainerResources,
        idempotency: Idempotency,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await _action(
            db_session, containers, container_resources, idempotency, current_user, container_id, "restart"
        )

    @delete(
        "/{container_id:uuid}",
        operation_id="deleteContainer",
        summary="Delete a container (stops it, destroys it with purge; cancels a creation in progress)",
        status_code=202,
    )
    async def delete_container(
        self,
        current_user: CurrentUser,
        db_session: AsyncSession,
        containers: ContainerService,
        container_resources: ContainerResources,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        op = await containers.request_delete(container_id, current_user.id)
        await commit_and_send(db_session, container_resources, op)
        return accepted(op)

    @post(
        "/{container_id:uuid}/retry",
        operation_id="retryContainer",
        summary="Re-run a failed creation from its stored request",
        status_code=202,
    )
    async def retry_container(
        self,
        current_user: CurrentUser,
        db_session: AsyncSession,
        containers: ContainerService,
        container_resources: ContainerResources,
        idempotency: Idempotency,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        if replay := await idempotency.replay():
            return replay
        op = await containers.request_retry(container_id, current_user.id)
        return await accept_operation(db_session, container_resources, idempotency, op)

    @get(
        "/{container_id:uuid}/operations",
        operation_id="listContainerOperations",
        summary="Operations of a container, newest first",
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
        summary="The container's audit trail, newest first, with counts per event type",
    )
    async def list_container_events(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        events: EventService,
        container_id: FromPath[uuid.UUID],
        type: Annotated[str | None, QueryParameter(description="Only events of this type.")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> EventPage:
        container = await containers.get_for_user(container_id, current_user.id)
        return await events.page(container.id, type=type, limit=limit, cursor=cursor)

    @get(
        "/{container_id:uuid}/progress",
        operation_id="streamContainerProgress",
        summary="Live progress (text/event-stream): replays steps and log lines, then streams; ends with `done`",
        description=(
            "Each event has a monotonically increasing `id` shared by step events (`event: step`, `error`, ...) and "
            "log lines (`event: log`). Reconnect with `Last-Event-ID` to continue without gaps or duplicates. A "
            "comment is sent every 15 s (`INFRAHAUS_SSE_HEARTBEAT_SECONDS`). The final `event: done` carries the "
            "latest operation's id and status. "
            "Stream it with `curl -N` or an SSE client (generated SDKs buffer the whole body)."
        ),
        media_type="text/event-stream",
    )
    async def stream_container_progress(
        self,
        request: Request[Any, Any, Any],
        current_user: CurrentUser,
        containers: ContainerService,
        container_resources: ContainerResources,
        ports: Ports,
        container_id: FromPath[uuid.UUID],
        last_event_id: Annotated[
            str | None, Parameter(header="Last-Event-ID", description="The last event id received.")
        ] = None,
    ) -> ServerSentEvent:
        container = await containers.get_for_user(container_id, current_user.id)
        app_resources: AppResources = request.app.state.resources
        stream = ProgressStream(
            container.id,
            last_event_id=parse_last_event_id(last_event_id),
            sessionmaker=app_resources.sessionmaker,
            logbuffer=container_resources.logbuffer,
            bus=ports.events,
            heartbeat=app_resources.settings.sse_heartbeat_seconds,
        )
        return ServerSentEvent(stream.__aiter__(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @get(
        "/{container_id:uuid}/logs",
        operation_id="getContainerLogs",
        summary="The progress log buffer (last 2000 lines, 48 h) as JSON, optionally of one script",
    )
    async def get_container_logs(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        container_resources: ContainerResources,
        container_id: FromPath[uuid.UUID],
        script: Annotated[str | None, QueryParameter(max_length=64, description="Only lines of this script.")] = None,
        after: Annotated[int, QueryParameter(ge=0, description="Only lines with a greater id.")] = 0,
    ) -> LogPage:
        container = await containers.get_for_user(container_id, current_user.id)
        items = await container_resources.logbuffer.lines(container.id, after=after, script=script)
        return LogPage(items=items, last_id=items[-1].id if items else None)


async def _operation(db_session: AsyncSession, operation_id: uuid.UUID | None) -> Operation:
    op = await db_session.get(Operation, operation_id) if operation_id is not None else None
    if op is None:
        raise RuntimeError("the accepted creation has no operation")
    return op


async def _action(
    db_session: AsyncSession,
    containers: ContainerService,
    resources: ContainerResources,
    idempotency: Idempotency,
    user: CurrentUser,
    container_id: uuid.UUID,
    kind: str,
    params: dict[str, Any] | None = None,
) -> Response[OperationRead]:
    if replay := await idempotency.replay(params):
        return replay
    op = await containers.request_action(container_id, user.id, kind, probe=resources.probe, params=params)
    return await accept_operation(db_session, resources, idempotency, op)
