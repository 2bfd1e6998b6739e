"""`/api/nodes/{node_id}/vmids`: VMIDs in use (cached per node), availability and the next free one."""

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromPath, PathParameter

from infrahaus_api.auth import CurrentUser
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.nodes.controller import UPSTREAM_RESPONSES
from infrahaus_domain.nodes.service import NodeService
from infrahaus_domain.vmids.schemas import VMID_MAX, VMID_MIN, VmidAvailability, VmidList, VmidNext
from infrahaus_domain.vmids.service import VmidService


class VmidController(Controller):
    path = "/nodes/{node_id:uuid}/vmids"
    tags = ["vmids"]

    @get(
        "",
        operation_id="listNodeVmids",
        summary="List the VMIDs in use on a node's cluster",
        description=(
            "LXC and QEMU guests, from a cache refreshed every 300 s (`POST .../vmids/refresh` reloads it now)."
        ),
        opt=ETAG_WEAK,
        responses=UPSTREAM_RESPONSES,
    )
    async def list_node_vmids(
        self, current_user: CurrentUser, nodes: NodeService, vmids: VmidService, node_id: FromPath[uuid.UUID]
    ) -> VmidList:
        return await vmids.taken(await nodes.get_owned(current_user.id, node_id))

    @get(
        "/next",
        operation_id="getNextNodeVmid",
        summary="Get a free VMID",
        description="Proxmox's next free id, skipping ids reserved by accepted creations.",
        opt=ETAG_STRONG,
        responses=UPSTREAM_RESPONSES,
    )
    async def get_next_node_vmid(
        self, current_user: CurrentUser, nodes: NodeService, vmids: VmidService, node_id: FromPath[uuid.UUID]
    ) -> VmidNext:
        return await vmids.next_free(await nodes.get_owned(current_user.id, node_id))

    @get(
        # Declared as text in the path so that a VMID that is not a number is a 422 problem naming the parameter
        # (an `int` path segment would not match at all and answer 404); the parameter below parses and checks it.
        "/{vmid:str}",
        operation_id="checkNodeVmid",
        summary="Check whether a VMID is free",
        description="When it is not, `reason` says why: `taken` on Proxmox, or `reserved` by an accepted creation.",
        opt=ETAG_STRONG,
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
