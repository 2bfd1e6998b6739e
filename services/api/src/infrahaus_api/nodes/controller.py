"""`/api/nodes`: the node registry, connection tests and read-through helpers for creation forms."""

import uuid
from typing import Annotated, Any

from litestar import Controller, MediaType, Response, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from infrahaus_api.auth import CurrentUser
from infrahaus_api.errors import PROBLEM_JSON, ProblemDetail, problem_spec
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.pagination import Cursor, Limit
from infrahaus_api.resources import AppResources
from infrahaus_domain.nodes.schemas import (
    BridgeRead,
    CertificateRead,
    NodeCreate,
    NodePage,
    NodeProbe,
    NodeRead,
    NodeStatusRead,
    NodeTestResult,
    NodeUpdate,
    OsTemplateRead,
    StorageContent,
    StorageRead,
)
from infrahaus_domain.nodes.service import NodeService

# Upstream failures answer 502, never 401/403: those would read as a problem with the caller's own session.
UPSTREAM_RESPONSES = {
    502: ResponseSpec(
        data_container=ProblemDetail,
        media_type=PROBLEM_JSON,
        generate_examples=False,
        description=(
            "The Proxmox node could not be used. `code`: `node_unreachable` (connection refused, DNS, timeout), "
            "`tls_mismatch` (certificate differs from the pinned fingerprint), `tls_error` (TLS verification "
            "failed), `node_auth_failed` (the node answered 401 to the API token), `node_permission_denied` "
            "(the node answered 403, or the token lacks a privilege infrahaus needs), `ssh_host_key_mismatch` (the "
            "SSH service presented another host key than the pinned one), `not_a_proxmox_node` (the address "
            "answered, but not like Proxmox VE), `node_error` (any other error the node answered with)."
        ),
    ),
    422: problem_spec(
        "Validation failed; also `outbound_denied` (the address is refused by the server's outbound policy, "
        "nothing was sent to it)"
    ),
}
# Probes, registrations, tests and endpoint changes make the server connect somewhere: limited per user.
CHECK_RESPONSES = {
    **UPSTREAM_RESPONSES,
    429: problem_spec("Too many node checks (probe, register, test, endpoint change); see Retry-After"),
}


def encoded(body: bytes) -> Response[Any]:
    """An answer whose body is already the JSON of the handler's declared type (kept encoded in memory)."""
    return Response(body, media_type=MediaType.JSON)


class NodeController(Controller):
    path = "/nodes"
    tags = ["nodes"]

    @get(
        "",
        operation_id="listNodes",
        summary="List your nodes",
        opt=ETAG_WEAK,
    )
    async def list_nodes(
        self, current_user: CurrentUser, resources: AppResources, limit: Limit = 50, cursor: Cursor = None
    ) -> Response[NodePage]:
        # The hot read: the first page comes encoded from memory (`infrahaus_domain.nodes.list_cache`), so this
        # handler asks for no database session; one is opened only when the page must be read.
        async def read() -> NodePage:
            async with resources.read_sessionmaker() as session:
                return await resources.services(session).nodes.list_page(current_user.id, limit=limit, cursor=cursor)

        if cursor is not None:
            return Response(await read())
        return encoded(await resources.node_lists.first_page(current_user.id, limit, read))

    @post(
        "",
        operation_id="createNode",
        summary="Register a node",
        description=(
            "Its API and SSH access are tested before anything is saved; the first node becomes your default."
        ),
        responses=CHECK_RESPONSES,
    )
    async def create_node(
        self, current_user: CurrentUser, nodes: NodeService, idempotency: Idempotency, data: JSONBody[NodeCreate]
    ) -> Response[NodeRead]:
        if replay := await idempotency.replay(data):
            return replay
        node = await nodes.create_node(current_user.id, data)
        return await idempotency.record(Response(node, status_code=201, headers={"Location": f"/api/nodes/{node.id}"}))

    @post(
        "/probe",
        operation_id="probeNode",
        summary="Fetch a host's TLS certificate fingerprint",
        description=(
            "Send the fingerprint back as `tls_fingerprint` when registering the node to pin its "
            "(self-signed) certificate."
        ),
        status_code=200,
        responses=CHECK_RESPONSES,
    )
    async def probe_node(
        self, current_user: CurrentUser, nodes: NodeService, data: JSONBody[NodeProbe]
    ) -> CertificateRead:
        return await nodes.probe(current_user.id, data)

    @get(
        "/{node_id:uuid}",
        operation_id="getNode",
        summary="Get a node",
        opt=ETAG_STRONG,
    )
    async def get_node(self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]) -> NodeRead:
        return await nodes.read(await nodes.get_owned(current_user.id, node_id))

    @patch(
        "/{node_id:uuid}",
        operation_id="updateNode",
        summary="Update a node",
        description=(
            "An omitted secret is kept, `null` clears it; a changed endpoint or token is tested again before "
            "it is saved."
        ),
        responses=CHECK_RESPONSES,
    )
    async def update_node(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID], data: JSONBody[NodeUpdate]
    ) -> NodeRead:
        return await nodes.update_node(current_user.id, node_id, data)

    @delete("/{node_id:uuid}", operation_id="deleteNode", summary="Delete a node without containers")
    async def delete_node(self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]) -> None:
        await nodes.delete_node(current_user.id, node_id)

    @post("/{node_id:uuid}/default", operation_id="setDefaultNode", summary="Make a node your default", status_code=200)
    async def set_default_node(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> NodeRead:
        return await nodes.set_default(current_user.id, node_id)

    @post(
        "/{node_id:uuid}/test",
        operation_id="testNode",
        summary="Test a node's API and SSH access",
        description="The first successful SSH connection pins the node's host key.",
        status_code=200,
        responses={429: CHECK_RESPONSES[429]},
    )
    async def test_node(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> NodeTestResult:
        return await nodes.test_node(current_user.id, node_id)

    @get(
        "/{node_id:uuid}/status",
        operation_id="getNodeStatus",
        summary="Get a node's live status",
        description="CPU, memory, disk, uptime and Proxmox VE version, as the node reports them now.",
        opt=ETAG_STRONG,
        responses=UPSTREAM_RESPONSES,
    )
    async def get_node_status(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> NodeStatusRead:
        return await nodes.status(current_user.id, node_id)

    @get(
        "/{node_id:uuid}/storages",
        operation_id="listNodeStorages",
        summary="List a node's storages",
        description="A container's root disk needs a storage with `content` including `rootdir`.",
        opt=ETAG_WEAK,
        responses=UPSTREAM_RESPONSES,
    )
    async def list_node_storages(
        self,
        current_user: CurrentUser,
        nodes: NodeService,
        node_id: FromPath[uuid.UUID],
        content: Annotated[StorageContent | None, QueryParameter(description="Only storages holding this.")] = None,
    ) -> list[StorageRead]:
        return await nodes.storages(current_user.id, node_id, content)

    @get(
        "/{node_id:uuid}/os-templates",
        operation_id="listNodeOsTemplates",
        summary="List a node's container OS images",
        description="The `vztmpl` volumes across the node's storages.",
        opt=ETAG_WEAK,
        responses=UPSTREAM_RESPONSES,
    )
    async def list_node_os_templates(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> list[OsTemplateRead]:
        return await nodes.os_templates(current_user.id, node_id)

    @get(
        "/{node_id:uuid}/bridges",
        operation_id="listNodeBridges",
        summary="List a node's network bridges",
        opt=ETAG_WEAK,
        responses=UPSTREAM_RESPONSES,
    )
    async def list_node_bridges(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> list[BridgeRead]:
        return await nodes.bridges(current_user.id, node_id)
