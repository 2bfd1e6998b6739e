"""/nodes/{node}/lxc: container list, create, config, pending changes, status, lifecycle, delete, interfaces.

Every lifecycle call returns the task's UPID at once; wait for it with `client.tasks.wait`. Start, stop, shutdown
and reboot check the container's lock inside their task (pve-container ``API2/LXC/Status.pm``): a locked container
makes the *task* fail (``CT is locked (backup)``, or ``can't lock file … - got timeout``), see
`ProxmoxTaskFailed.locked`; DELETE and PUT …/config refuse in the call (`ProxmoxLocked`).
"""

import builtins
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infrahaus_proxmox._paths import node_segment, vmid_segment
from infrahaus_proxmox.errors import ProxmoxError, ProxmoxResponseError, ProxmoxValidationError
from infrahaus_proxmox.models import LxcConfig, LxcCreate, LxcInterface, LxcPending, LxcStatus, LxcSummary
from infrahaus_proxmox.parsing import decode_list, decode_one
from infrahaus_proxmox.upid import Upid, parse_upid

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient


# Create-time problems Proxmox reports as a plain 500 from code rather than 400 from the schema (pve-container
# API2/LXC.pm create_vm, pve-storage Storage.pm, pve-common Tools.pm validate_ssh_public_keys): the parameter each
# one is about, so callers see a validation error with its field.
_CREATE_PARAM_ERRORS = (
    (re.compile(r"^storage '[^']*' (does not exist|is disabled|is not available on node '[^']*')$"), "storage"),
    (re.compile(r"^SSH public key validation error$"), "ssh-public-keys"),
    (re.compile(r"^unable to use volume \S+ - content type needs to be '\w+'$"), "ostemplate"),
)


def _create_error(exc: ProxmoxError) -> ProxmoxError:
    if exc.status != 500:
        return exc
    for pattern, field in _CREATE_PARAM_ERRORS:
        if pattern.match(exc.message):
            return ProxmoxValidationError(
                exc.message, {field: exc.message}, status=exc.status, method=exc.method, path=exc.path
            )
    return exc


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
        """POST /nodes/{node}/lxc. Conflicts ("CT 100 already exists") raise ProxmoxConflict; an unknown storage, an
        unreadable SSH key or a template of the wrong content type raise ProxmoxValidationError naming the
        parameter (Proxmox answers those with a plain 500). A missing template file only fails the task
        (``can't find file``)."""
        vmid_segment(params.vmid)
        try:
            return await self._task("POST", self._base(node), params.to_params())
        except ProxmoxError as exc:
            raise _create_error(exc) from exc

    async def config(self, node: str, vmid: int, *, current: bool = False) -> LxcConfig:
        """GET /nodes/{node}/lxc/{vmid}/config; a missing container raises ProxmoxNotFound.

        Values waiting for the next start are merged in unless `current` (then: what the container runs with).
        While a create task runs, or after one died, the config holds nothing but ``lock: create``."""
        params = {"current": 1} if current else None
        data = await self._client.request("GET", f"{self._ct(node, vmid)}/config", params)
        if not isinstance(data, dict):
            raise ProxmoxResponseError("container config is not an object", method="GET", path=self._ct(node, vmid))
        return LxcConfig.from_data(data)

    async def update_config(
        self, node: str, vmid: int, values: Mapping[str, str], *, digest: str | None = None
    ) -> None:
        """PUT /nodes/{node}/lxc/{vmid}/config: set options (pve-container ``API2/LXC/Config.pm`` ``update_vm``).

        Synchronous (no task): the config file lock and the config's own lock are checked in the call
        (`ProxmoxLocked`). With `digest` (from `config`), Proxmox refuses the change when the config changed since
        it was read. On a running container, options other than the fast-plug ones (tags, description, onboot,
        hostname, cores, ...) wait for the next start (see `pending`)."""
        params: dict[str, Any] = dict(values)
        if digest is not None:
            params["digest"] = digest
        await self._client.request("PUT", f"{self._ct(node, vmid)}/config", params)

    async def pending(self, node: str, vmid: int) -> builtins.list[LxcPending]:
        """GET …/pending: every config key with its current and (if any) pending value."""
        data = await self._client.request("GET", f"{self._ct(node, vmid)}/pending")
        return decode_list(data, LxcPending, "pending changes")

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

    async def interfaces(self, node: str, vmid: int) -> builtins.list[LxcInterface] | None:
        """GET .../interfaces: addresses as the running container reports them, ``lo`` included.

        None when there is no container process (stopped, or no such container: Proxmox answers ``null``); a
        container still booting answers a list whose interfaces may lack addresses."""
        data = await self._client.request("GET", f"{self._ct(node, vmid)}/interfaces")
        if data is None:
            return None
        return decode_list(data, LxcInterface, "container interfaces")
