"""`/api/containers` read side: the live list, summary, detail, services, credential reveals and service logs.

Live state comes from every node of the caller at once (see `infrahaus_domain.containers.inventory`); a node that
does not answer never fails a read. Writes live in `controller.py`.
"""

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import FromPath, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import CurrentUser
from infrahaus_api.containers.controller import CONTAINER_DEPENDENCIES, accept_operation
from infrahaus_api.containers.resources import ContainerResources
from infrahaus_api.errors import problem_spec
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES
from infrahaus_api.resources import AppResources
from infrahaus_domain.containers.inventory import LiveInventory
from infrahaus_domain.containers.read import MAX_LOG_LINES, ContainerFilters, ContainerReadService
from infrahaus_domain.containers.read_schemas import (
    ContainerDetail,
    ContainerPage,
    ContainerSummary,
    CredentialsRead,
    LiveStatus,
    ServiceList,
    ServiceLogs,
)
from infrahaus_domain.containers.schemas import Lifecycle
from infrahaus_domain.containers.service import ContainerService
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.events.service import EventService
from infrahaus_domain.operations.schemas import OperationRead
from infrahaus_domain.ports import Ports
from infrahaus_domain.settings import Settings

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size (default 50, at most 500).")]
Cursor = Annotated[str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")]
ServiceName = Annotated[str, PathParameter(description="The service's name as listed, e.g. `nginx`.")]


def build_inventory(settings: Settings, resources: AppResources) -> LiveInventory:
    """The per-app live inventory (pooled node clients, per-node answers cached in the Cache port)."""
    return LiveInventory(
        resources.secret_box,
        resources.ports.cache,
        timeout=settings.inventory_node_timeout,
        cache_ttl=settings.inventory_cache_seconds,
    )


def provide_container_reads(
    state: State,
    db_session: AsyncSession,
    secret_box: SecretBox,
    events: EventService,
    ports: Ports,
    settings: Settings,
) -> ContainerReadService:
    inventory: LiveInventory = state.inventory
    return ContainerReadService(
        db_session,
        inventory=inventory,
        box=secret_box,
        events=events,
        cache=ports.cache,
        reveal_limit=settings.credentials_reveal_limit,
        reveal_window=settings.credentials_reveal_window_seconds,
    )


class ContainerReadController(Controller):
    path = "/containers"
    tags = ["containers"]
    dependencies = {**CONTAINER_DEPENDENCIES, "reads": Provide(provide_container_reads, sync_to_thread=False)}

    @get(
        "",
        operation_id="listContainers",
        summary="The caller's containers with live status from every node (fetched concurrently), newest first",
        description=(
            "Each node is asked once (answers are reused for a few seconds) and has a short timeout: a node that "
            "does not answer does not fail the list, its containers show `status: unknown` and it is listed in "
            "`unreachable_nodes`. `status` filters on the live status after the merge: a page holds up to `limit` "
            "matching containers, and `next_cursor` continues after the last one returned. The order "
            "(`created_at`, `id`, newest first) is stable: pages never repeat or skip a container."
        ),
    )
    async def list_containers(
        self,
        current_user: CurrentUser,
        reads: ContainerReadService,
        node_id: Annotated[uuid.UUID | None, QueryParameter(description="Only containers on this node.")] = None,
        lifecycle: Annotated[Lifecycle | None, QueryParameter(description="Only this lifecycle.")] = None,
        status: Annotated[LiveStatus | None, QueryParameter(description="Only this live status.")] = None,
        template_id: Annotated[uuid.UUID | None, QueryParameter(description="Only from this template.")] = None,
        q: Annotated[
            str | None,
            QueryParameter(max_length=100, description="Hostname substring (any case), VMID or IP address."),
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> ContainerPage:
        filters = ContainerFilters(node_id=node_id, lifecycle=lifecycle, status=status, template_id=template_id, q=q)
        return await reads.page(current_user.id, filters, limit=limit, cursor=cursor)

    @get(
        "/summary",
        operation_id="getContainerSummary",
        summary="Counts of the caller's containers by lifecycle, by live status and per node",
    )
    async def get_container_summary(self, current_user: CurrentUser, reads: ContainerReadService) -> ContainerSummary:
        return await reads.summary(current_user.id)

    @get(
        "/{container_id:uuid}",
        operation_id="getContainer",
        summary="A container with live status, its parsed Proxmox config and the creation request",
        description="When the node cannot be read, `config` is null and `config_error` says why.",
    )
    async def get_container(
        self, current_user: CurrentUser, reads: ContainerReadService, container_id: FromPath[uuid.UUID]
    ) -> ContainerDetail:
        return await reads.detail(container_id, current_user.id)

    @get(
        "/{container_id:uuid}/services",
        operation_id="listContainerServices",
        summary="Services discovered in the container, with URLs; credential values are never listed",
    )
    async def list_container_services(
        self, current_user: CurrentUser, reads: ContainerReadService, container_id: FromPath[uuid.UUID]
    ) -> ServiceList:
        return await reads.services(container_id, current_user.id)

    @post(
        "/{container_id:uuid}/services/refresh",
        operation_id="refreshContainerServices",
        summary="Discover the container's services again (needs a ready, running container)",
        status_code=202,
        responses=UPSTREAM_RESPONSES,
    )
    async def refresh_container_services(
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
        op = await containers.request_action(
            container_id, current_user.id, "services_refresh", probe=container_resources.probe
        )
        return await accept_operation(db_session, container_resources, idempotency, op)

    @get(
        "/{container_id:uuid}/services/{name:str}/credentials",
        operation_id="revealServiceCredentials",
        summary="Reveal a service's saved credentials (decrypted); every reveal is recorded as an event",
        description="Rate limited per user (429 with `Retry-After`). A service without credentials is a 404.",
        responses={429: problem_spec("Too many credential reveals; see Retry-After")},
        cache_control=None,
    )
    async def reveal_service_credentials(
        self,
        current_user: CurrentUser,
        reads: ContainerReadService,
        container_id: FromPath[uuid.UUID],
        name: ServiceName,
    ) -> Response[CredentialsRead]:
        body = await reads.reveal_credentials(container_id, current_user.id, name)
        return Response(body, headers={"Cache-Control": "no-store"})

    @get(
        "/{container_id:uuid}/services/{name:str}/logs",
        operation_id="getServiceLogs",
        summary="The last journal lines of a service's unit (`journalctl` inside the container)",
        responses=UPSTREAM_RESPONSES,
    )
    async def get_service_logs(
        self,
        current_user: CurrentUser,
        reads: ContainerReadService,
        container_id: FromPath[uuid.UUID],
        name: ServiceName,
        lines: Annotated[
            int, QueryParameter(ge=1, le=MAX_LOG_LINES, description="How many lines (1-1000, default 100).")
        ] = 100,
    ) -> ServiceLogs:
        return await reads.service_logs(container_id, current_user.id, name, lines)
