"""`/api/containers` read side: the live list, summary, detail, services, credential reveals and service logs.

Live state comes from every node of the caller at once (see `infrahaus_domain.containers.inventory`); a node that
does not answer never fails a read. Writes live in `controller.py`.
"""

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import FromPath, PathParameter, QueryParameter

from infrahaus_api.auth import CurrentUser
from infrahaus_api.errors import problem_spec
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.idempotency import Dispatch
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES
from infrahaus_api.pagination import BoundedCursor, Limit
from infrahaus_domain.containers.listing import ContainerFilters, ContainerListing
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
from infrahaus_domain.containers.service_catalog import MAX_LOG_LINES, ServiceCatalog
from infrahaus_domain.operations.schemas import OperationRead

ServiceName = Annotated[str, PathParameter(description="The service's name as listed, e.g. `nginx`.")]


class ContainerReadController(Controller):
    path = "/containers"
    tags = ["containers"]

    @get(
        "",
        operation_id="listContainers",
        summary="List your containers with their live status",
        opt=ETAG_WEAK,
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
        listing: ContainerListing,
        node_id: Annotated[uuid.UUID | None, QueryParameter(description="Only containers on this node.")] = None,
        lifecycle: Annotated[Lifecycle | None, QueryParameter(description="Only this lifecycle.")] = None,
        status: Annotated[LiveStatus | None, QueryParameter(description="Only this live status.")] = None,
        template_id: Annotated[uuid.UUID | None, QueryParameter(description="Only from this template.")] = None,
        q: Annotated[
            str | None,
            QueryParameter(max_length=100, description="Hostname substring (any case), VMID or IP address."),
        ] = None,
        limit: Limit = 50,
        cursor: BoundedCursor = None,
    ) -> ContainerPage:
        filters = ContainerFilters(node_id=node_id, lifecycle=lifecycle, status=status, template_id=template_id, q=q)
        return await listing.page(current_user.id, filters, limit=limit, cursor=cursor)

    @get(
        "/summary",
        operation_id="getContainerSummary",
        summary="Count your containers",
        description="By lifecycle, by live status and per node.",
        opt=ETAG_WEAK,
    )
    async def get_container_summary(self, current_user: CurrentUser, listing: ContainerListing) -> ContainerSummary:
        return await listing.summary(current_user.id)

    @get(
        "/{container_id:uuid}",
        operation_id="getContainer",
        summary="Get a container",
        opt=ETAG_STRONG,
        description=(
            "With its live status, its parsed Proxmox config and the creation request. When the node cannot be "
            "read, `config` is null and `config_error` says why."
        ),
    )
    async def get_container(
        self, current_user: CurrentUser, listing: ContainerListing, container_id: FromPath[uuid.UUID]
    ) -> ContainerDetail:
        return await listing.detail(container_id, current_user.id)

    @get(
        "/{container_id:uuid}/services",
        operation_id="listContainerServices",
        summary="List a container's services",
        description="The services discovered inside, with URLs; credential values are never listed here.",
        opt=ETAG_WEAK,
    )
    async def list_container_services(
        self, current_user: CurrentUser, catalog: ServiceCatalog, container_id: FromPath[uuid.UUID]
    ) -> ServiceList:
        return await catalog.services(container_id, current_user.id)

    @post(
        "/{container_id:uuid}/services/refresh",
        operation_id="refreshContainerServices",
        summary="Discover a container's services again",
        description="Needs a ready, running container; answers 202 with the operation.",
        status_code=202,
        responses=UPSTREAM_RESPONSES,
    )
    async def refresh_container_services(
        self,
        current_user: CurrentUser,
        containers: ContainerService,
        dispatch: Dispatch,
        container_id: FromPath[uuid.UUID],
    ) -> Response[OperationRead]:
        return await dispatch.operation(
            lambda: containers.request_action(container_id, current_user.id, "services_refresh")
        )

    @get(
        "/{container_id:uuid}/services/{name:str}/credentials",
        operation_id="revealServiceCredentials",
        summary="Reveal a service's saved credentials",
        description=(
            "The values, decrypted; every reveal is recorded as a `credentials_viewed` event. Rate limited per "
            "user (429 with `Retry-After`). A service without credentials is a 404."
        ),
        responses={429: problem_spec("Too many credential reveals; see Retry-After")},
        cache_control=None,
        # Records the reveal as an event: a GET that writes (infrahaus_api.db).
        opt={"transaction": True},
    )
    async def reveal_service_credentials(
        self,
        current_user: CurrentUser,
        catalog: ServiceCatalog,
        container_id: FromPath[uuid.UUID],
        name: ServiceName,
    ) -> Response[CredentialsRead]:
        body = await catalog.reveal_credentials(container_id, current_user.id, name)
        return Response(body, headers={"Cache-Control": "no-store"})

    @get(
        "/{container_id:uuid}/services/{name:str}/logs",
        operation_id="getServiceLogs",
        summary="Read a service's journal",
        description="The last lines of the service unit's journal (`journalctl` inside the container).",
        opt=ETAG_WEAK,
        responses=UPSTREAM_RESPONSES,
    )
    async def get_service_logs(
        self,
        current_user: CurrentUser,
        catalog: ServiceCatalog,
        container_id: FromPath[uuid.UUID],
        name: ServiceName,
        lines: Annotated[
            int, QueryParameter(ge=1, le=MAX_LOG_LINES, description="How many lines (1-1000, default 100).")
        ] = 100,
    ) -> ServiceLogs:
        return await catalog.service_logs(container_id, current_user.id, name, lines)
