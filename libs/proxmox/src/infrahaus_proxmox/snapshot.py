"""/nodes/{node}/lxc/{vmid}/snapshot and …/feature: a container's snapshots (pve-container
``src/PVE/API2/LXC/Snapshot.pm``; pve-guest-common ``src/PVE/AbstractConfig.pm`` ``snapshot_create``,
``snapshot_delete``, ``snapshot_rollback``).

Create, delete and rollback answer a task's UPID at once (task types ``vzsnapshot``, ``vzdelsnapshot``,
``vzrollback``); everything they refuse — a lock (``CT is locked (…)``), a name already used, a storage that cannot
snapshot (``snapshot feature is not available``), a missing snapshot (``snapshot '<s>' does not exist``), ZFS's refusal
to roll back past newer snapshots — fails the *task*. Only the reserved names ``current`` and ``vzdump`` are refused
in the call (500). While they run the container holds the lock ``snapshot``, ``snapshot-delete`` or ``rollback``. A
rollback stops a running container hard and leaves it stopped unless ``start``; ask `has_feature` before creating
one (``GET …/feature?feature=snapshot``, pve-container ``API2/LXC.pm`` ``vm_feature``).
"""

import builtins
import re
from typing import TYPE_CHECKING, Any

import msgspec

from infrahaus_proxmox._paths import node_segment, quoted_segment, vmid_segment
from infrahaus_proxmox.errors import ProxmoxResponseError
from infrahaus_proxmox.models import LxcConfig
from infrahaus_proxmox.parsing import decode_list, parse_bool
from infrahaus_proxmox.upid import Upid, parse_upid

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient

# pve-common JSONSchema.pm `pve-configid` (the format of `pve-snapshot-name`), at most 40 characters.
SNAPSHOT_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]{1,39}")
RESERVED_NAMES = frozenset({"current", "vzdump"})
# The message of a snapshot task on a storage that cannot snapshot (AbstractConfig __snapshot_prepare).
NOT_AVAILABLE = "snapshot feature is not available"


class LxcSnapshot(msgspec.Struct, kw_only=True):
    """One entry of ``GET …/snapshot``. The pseudo entry ``current`` (the live container: `running`, `digest`) is
    listed too, with the snapshot it descends from as `parent`."""

    name: str
    description: str = ""
    snaptime: int | None = None
    parent: str | None = None
    # `prepare` or `delete` while a create or delete is in progress (or died half-way).
    snapstate: str | None = None
    running: int | None = None
    digest: str | None = None

    @property
    def is_current(self) -> bool:
        return self.name == "current"


def validate_snapshot_name(name: str) -> str:
    """A name Proxmox accepts for a snapshot (and not a reserved one); ValueError otherwise."""
    if not isinstance(name, str) or not SNAPSHOT_NAME.fullmatch(name) or name.lower() in RESERVED_NAMES:
        raise ValueError(f"invalid snapshot name {name!r:.80}")
    return name


class SnapshotApi:
    def __init__(self, client: "ProxmoxClient"):
        self._client = client

    @staticmethod
    def _base(node: str, vmid: int) -> str:
        return f"/nodes/{node_segment(node)}/lxc/{vmid_segment(vmid)}/snapshot"

    def _one(self, node: str, vmid: int, name: str) -> str:
        return f"{self._base(node, vmid)}/{quoted_segment(validate_snapshot_name(name))}"

    async def _task(self, method: str, path: str, params: dict[str, Any] | None = None) -> Upid:
        data = await self._client.request(method, path, params)
        try:
            return parse_upid(data)
        except ValueError as exc:
            raise ProxmoxResponseError(f"expected a task id, got {data!r:.80}", method=method, path=path) from exc

    async def list(self, node: str, vmid: int) -> builtins.list[LxcSnapshot]:
        """GET …/snapshot: every snapshot (unsorted, as Proxmox answers) plus the pseudo entry ``current``."""
        return decode_list(await self._client.request("GET", self._base(node, vmid)), LxcSnapshot, "snapshot list")

    async def create(self, node: str, vmid: int, name: str, description: str | None = None) -> Upid:
        """POST …/snapshot (task ``vzsnapshot``)."""
        validate_snapshot_name(name)
        params: dict[str, Any] = {"snapname": name}
        if description is not None:
            params["description"] = description
        return await self._task("POST", self._base(node, vmid), params)

    async def delete(self, node: str, vmid: int, name: str, *, force: bool = False) -> Upid:
        """DELETE …/snapshot/{snapname} (task ``vzdelsnapshot``); `force` removes it from the config even when
        removing the storage snapshot fails."""
        return await self._task("DELETE", self._one(node, vmid, name), {"force": force} if force else None)

    async def rollback(self, node: str, vmid: int, name: str, *, start: bool = False) -> Upid:
        """POST …/snapshot/{snapname}/rollback (task ``vzrollback``): stops a running container hard, restores the
        snapshot, and starts it again in the same task when `start`."""
        return await self._task("POST", f"{self._one(node, vmid, name)}/rollback", {"start": start} if start else None)

    async def config(self, node: str, vmid: int, name: str) -> LxcConfig:
        """GET …/snapshot/{snapname}/config: the config the snapshot holds."""
        data = await self._client.request("GET", f"{self._one(node, vmid, name)}/config")
        if not isinstance(data, dict):
            raise ProxmoxResponseError("snapshot config is not an object", method="GET", path=self._base(node, vmid))
        return LxcConfig.from_data(data)

    async def has_feature(self, node: str, vmid: int, feature: str = "snapshot") -> bool:
        """GET /nodes/{node}/lxc/{vmid}/feature: whether every volume of the container supports `feature`
        (``snapshot``: its storages can snapshot and no bind or device mount point is configured)."""
        path = f"/nodes/{node_segment(node)}/lxc/{vmid_segment(vmid)}/feature"
        data = await self._client.request("GET", path, {"feature": feature})
        if not isinstance(data, dict):
            raise ProxmoxResponseError("feature answer is not an object", method="GET", path=path)
        value = data.get("hasFeature")
        return parse_bool(str(int(value)) if isinstance(value, bool | int) else value)
