"""`/api/nodes/{node_id}/vmids`: VMIDs in use (cached per node), availability and the next free one."""

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import Provide
from litestar.params import FromPath, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import CurrentUser
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES, provide_node_service
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.nodes.service import NodeService
from infrahaus_domain.ports import Ports
from infrahaus_domain.vmids.schemas import VMID_MAX, VMID_MIN, VmidAvailability, VmidList, VmidNext
from infrahaus_domain.vmids.service import VmidService


def provide_vmid_service(db_session: AsyncSession, secret_box: SecretBox, ports: Ports) -> VmidService:
    return VmidService(db_session, cache=ports.cache, box=secret_box, lock=ports.lock)


class VmidController(Controller):
    path = "/nodes/{node_id:uuid}/vmids"
    tags = ["vmids"]
    dependencies = {
        "nodes": Provide(provide_node_service, sync_to_thread=False),
        "vmids": Provide(provide_vmid_service, sync_to_thread=False),
    }

    @get(
        "",
        operation_id="listNodeVmids",
        summary="VMIDs in use on the node's cluster (LXC and QEMU), from a cache refreshed every 300 s",
        responses=UPSTREAM_RESPONSES,
    )
    async def list_node_vmids(
        self, current_user: CurrentUser, nodes: NodeService, vmids: VmidService, node_id: FromPath[uuid.UUID]
    ) -> VmidList:
        return await vmids.taken(await nodes.get_owned(current_user.id, node_id))

    @get(
        "/next",
        operation_id="getNextNodeVmid",
        summary="A free VMID: Proxmox's next free id, skipping reserved ones",
        responses=UPSTREAM_RESPONSES,
    )
    async def get_next_node_vmid(
        self, current_user: CurrentUser, nodes: NodeService, vmids: VmidService, node_id: FromPath[uuid.UUID]
    ) -> VmidNext:
        return await vmids.next_free(await nodes.get_owned(current_user.id, node_id))

    @get(
        "/{vmid:int}",
        operation_id="checkNodeVmid",
        summary="Whether a VMID is free (`reason`: `taken` on Proxmox, or `reserved` by an accepted creation)",
        responses=UPSTREAM_RESPONSES,
    )
    async def check_node_vmid(
        self,
        current_user: CurrentUser,
        vmids: VmidService,
        node_id: FromPath[uuid.UUID],
        vmid: Annotated[int, PathParameter(ge=VMID_MIN, le=VMID_MAX, description="The VMID to check.")],
    ) -> VmidAvailability:
        return await vmids.check_owned(current_user.id, node_id, vmid)

    @post(
        "/refresh",
        operation_id="refreshNodeVmids",
        summary="Reload the VMIDs in use from the node now",
        status_code=200,
        responses=UPSTREAM_RESPONSES,
    )
    async def refresh_node_vmids(
        self, current_user: CurrentUser, nodes: NodeService, vmids: VmidService, node_id: FromPath[uuid.UUID]
    ) -> VmidList:
        return await vmids.refresh(await nodes.get_owned(current_user.id, node_id))
