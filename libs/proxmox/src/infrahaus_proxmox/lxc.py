"""/nodes/{node}/lxc: container list, create, config, status, lifecycle, delete, interfaces.

Every lifecycle call returns the task's UPID at once; wait for it with `client.tasks.wait`.
"""

import builtins
from typing import TYPE_CHECKING, Any

from infrahaus_proxmox._paths import node_segment, vmid_segment
from infrahaus_proxmox.errors import ProxmoxResponseError
from infrahaus_proxmox.models import LxcConfig, LxcCreate, LxcInterface, LxcStatus, LxcSummary
from infrahaus_proxmox.parsing import decode_list, decode_one
from infrahaus_proxmox.upid import Upid, parse_upid

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient


class LxcApi:
    def __init__(self, client: "ProxmoxClient"):
        self._client = client

    @staticmethod
    def _base(node: str) -> str:
        return f"/nodes/{node_segment(node)}/lxc"

    def _ct(self, node: str, vmid: int) -> str:
        return f"{self._base(node)}/{vmid_segment(vmid)}"

    async def _task(self, method: str, path: str, params: dict[str, Any] | None = None) -> Upid:
        data = await self._client.request(method, path, params)
        try:
            return parse_upid(data)
        except ValueError as exc:
            raise ProxmoxResponseError(f"expected a task id, got {data!r:.80}", method=method, path=path) from exc

    async def list(self, node: str) -> builtins.list[LxcSummary]:
        """GET /nodes/{node}/lxc."""
        return decode_list(await self._client.request("GET", self._base(node)), LxcSummary, "container list")

    async def create(self, node: str, params: LxcCreate) -> Upid:
        """POST /nodes/{node}/lxc. Conflicts ("CT 100 already exists") raise ProxmoxConflict."""
        vmid_segment(params.vmid)
        return await self._task("POST", self._base(node), params.to_params())

    async def config(self, node: str, vmid: int) -> LxcConfig:
        """GET /nodes/{node}/lxc/{vmid}/config; a missing container raises ProxmoxNotFound."""
        data = await self._client.request("GET", f"{self._ct(node, vmid)}/config")
        if not isinstance(data, dict):
            raise ProxmoxResponseError("container config is not an object", method="GET", path=self._ct(node, vmid))
        return LxcConfig.from_data(data)

    async def status(self, node: str, vmid: int) -> LxcStatus:
        """GET /nodes/{node}/lxc/{vmid}/status/current."""
        data = await self._client.request("GET", f"{self._ct(node, vmid)}/status/current")
        return decode_one(data, LxcStatus, "container status")

    async def start(self, node: str, vmid: int) -> Upid:
        """POST .../status/start."""
        return await self._task("POST", f"{self._ct(node, vmid)}/status/start")

    async def stop(self, node: str, vmid: int) -> Upid:
        """POST .../status/stop: immediate stop, like pulling the plug."""
        return await self._task("POST", f"{self._ct(node, vmid)}/status/stop")

    async def reboot(self, node: str, vmid: int) -> Upid:
        """POST .../status/reboot."""
        return await self._task("POST", f"{self._ct(node, vmid)}/status/reboot")

    async def shutdown(self, node: str, vmid: int, timeout: int = 60, force_stop: bool = False) -> Upid:  # noqa: ASYNC109
        """POST .../status/shutdown: clean shutdown, waiting `timeout` s, then stopping if `force_stop`."""
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
        params = {"timeout": timeout, "forceStop": force_stop}
        return await self._task("POST", f"{self._ct(node, vmid)}/status/shutdown", params)

    async def delete(
        self, node: str, vmid: int, purge: bool = True, destroy_unreferenced_disks: bool = True, force: bool = False
    ) -> Upid:
        """DELETE /nodes/{node}/lxc/{vmid}: destroy the container and its volumes."""
        params = {"purge": purge, "destroy-unreferenced-disks": destroy_unreferenced_disks, "force": force}
        return await self._task("DELETE", self._ct(node, vmid), params)

    async def interfaces(self, node: str, vmid: int) -> builtins.list[LxcInterface]:
        """GET .../interfaces: addresses as the running container reports them."""
        data = await self._client.request("GET", f"{self._ct(node, vmid)}/interfaces")
        return decode_list(data, LxcInterface, "container interfaces")
