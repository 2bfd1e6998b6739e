"""`/api/nodes`: the node registry, connection tests and read-through helpers for creation forms."""

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import CurrentUser
from infrahaus_api.errors import PROBLEM_JSON, ProblemDetail
from infrahaus_api.idempotency import Idempotency
from infrahaus_domain.crypto import SecretBox
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
            "(the node answered 403, or the token lacks a privilege infrahaus needs), `node_error` (any other "
            "error the node answered with)."
        ),
    )
}

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size (default 50, at most 500).")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]


def provide_node_service(db_session: AsyncSession, secret_box: SecretBox) -> NodeService:
    return NodeService(db_session, box=secret_box)


class NodeController(Controller):
    path = "/nodes"
    tags = ["nodes"]
    dependencies = {"nodes": Provide(provide_node_service, sync_to_thread=False)}

    @get("", operation_id="listNodes", summary="List your nodes")
    async def list_nodes(
        self, current_user: CurrentUser, nodes: NodeService, limit: Limit = 50, cursor: Cursor = None
    ) -> NodePage:
        return await nodes.list_page(current_user.id, limit=limit, cursor=cursor)

    @post(
        "",
        operation_id="createNode",
        summary="Register a node (its connection is tested first; the first node becomes the default)",
        responses=UPSTREAM_RESPONSES,
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
        summary="Fetch a host's TLS certificate fingerprint so it can be pinned",
        status_code=200,
        responses=UPSTREAM_RESPONSES,
    )
    async def probe_node(self, nodes: NodeService, data: JSONBody[NodeProbe]) -> CertificateRead:
        return await nodes.probe(data)

    @get("/{node_id:uuid}", operation_id="getNode", summary="Get a node")
    async def get_node(self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]) -> NodeRead:
        return await nodes.read(await nodes.get_owned(current_user.id, node_id))

    @patch(
        "/{node_id:uuid}",
        operation_id="updateNode",
        summary="Update a node (omitted secret = keep, null = clear; a changed endpoint or token is re-tested)",
        responses=UPSTREAM_RESPONSES,
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
        summary="Test API and SSH access (pins the SSH host key on the first success)",
        status_code=200,
    )
    async def test_node(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> NodeTestResult:
        return await nodes.test_node(current_user.id, node_id)

    @get(
        "/{node_id:uuid}/status",
        operation_id="getNodeStatus",
        summary="CPU, memory, disk, uptime and PVE version of the node",
        responses=UPSTREAM_RESPONSES,
    )
    async def get_node_status(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> NodeStatusRead:
        return await nodes.status(current_user.id, node_id)

    @get(
        "/{node_id:uuid}/storages",
        operation_id="listNodeStorages",
        summary="Storages of the node (a container's root disk needs `content=rootdir`)",
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
        summary="Container OS images (`vztmpl` volumes) across the node's storages",
        responses=UPSTREAM_RESPONSES,
    )
    async def list_node_os_templates(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> list[OsTemplateRead]:
        return await nodes.os_templates(current_user.id, node_id)

    @get(
        "/{node_id:uuid}/bridges",
        operation_id="listNodeBridges",
        summary="Network bridges of the node",
        responses=UPSTREAM_RESPONSES,
    )
    async def list_node_bridges(
        self, current_user: CurrentUser, nodes: NodeService, node_id: FromPath[uuid.UUID]
    ) -> list[BridgeRead]:
        return await nodes.bridges(current_user.id, node_id)
