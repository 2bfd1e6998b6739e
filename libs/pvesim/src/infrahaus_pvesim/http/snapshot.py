"""/nodes/{node}/lxc/{vmid}/snapshot… and …/feature: a container's snapshots, with a real copy of its tree each.

Modelled on pve-container (PVE 8, stable-bookworm) ``src/PVE/API2/LXC/Snapshot.pm`` (``list``, ``snapshot``,
``delsnapshot``, ``rollback``, ``update_snapshot_config``, ``get_snapshot_config``), ``src/PVE/API2/LXC.pm``
``vm_feature``, ``src/PVE/LXC/Config.pm`` ``has_feature`` / ``__snapshot_rollback_vm_stop``, pve-guest-common
``src/PVE/AbstractConfig.pm`` (``snapshot_create``, ``__snapshot_prepare``, ``__snapshot_commit``,
``snapshot_delete``, ``snapshot_rollback``) and pve-storage's ``volume_has_feature`` /
``ZFSPoolPlugin.pm`` ``volume_rollback_is_possible``:

- Only the reserved names are refused in the call (500 ``unable to use snapshot name 'current' (reserved name)``);
  the name's format is the schema's (``pve-configid``, 400). Everything else happens in the task.
- ``vzsnapshot``: under the config lock: template, ``check_lock``, ``snapshot name '<s>' already used``, every volume
  on a storage that can snapshot (zfspool, lvmthin, rbd, btrfs; not dir, nfs, cifs, lvm, nor a bind or device mount)
  else ``snapshot feature is not available``; then ``lock: snapshot`` and a ``[<s>]`` section (``snapstate:
  prepare``) holding a copy of the config; the volumes are snapshotted (here: the tree is copied); the commit drops
  ``snapstate`` and the lock and sets the current config's ``parent``.
- ``vzdelsnapshot``: ``snapshot '<s>' does not exist``; ``lock: snapshot-delete`` (``CT is locked (…)`` if another is
  held), ``snapstate: delete``, the copy removed, the section removed and ``parent`` links re-pointed.
- ``vzrollback``: ``snapshot '<s>' does not exist``; on ZFS ``can't rollback, '<s>' is not most recent snapshot on
  '<volid>'``; ``unable to rollback to incomplete snapshot (snapstate = …)``; ``check_lock``; a running container is
  stopped hard; ``lock: rollback``; the tree and the config are restored (description, unused volumes and snapshots
  kept), ``parent: <s>``; with ``start=1`` the container is started in the same task, else it stays stopped.
"""

import asyncio
import time
from typing import Any

from infrahaus_pvesim import guests, sandbox
from infrahaus_pvesim.http.common import ApiError, Ctx, Routes
from infrahaus_pvesim.http.lxc import LxcHandlers
from infrahaus_pvesim.schema import parse_property_string
from infrahaus_pvesim.state import SimGuest, SimSnapshot
from infrahaus_pvesim.tasks import TaskError, TaskLog

RESERVED = ("current", "vzdump")
# Storage types whose volumes can be snapshotted for a container (volume_has_feature 'snapshot' with raw or subvol).
SNAPSHOT_STORAGES = frozenset({"zfspool", "lvmthin", "rbd", "btrfs"})
# Not copied into a snapshot section (AbstractConfig __snapshot_copy_config).
_NOT_COPIED = ("lock", "description", "digest", "snapstate", "snaptime", "vmstate")


def indexed(key: str, prefix: str) -> bool:
    return key.startswith(prefix) and key[len(prefix) :].isdigit()


def _volume_keys(config: dict[str, str]) -> list[str]:
    return [key for key in config if key == "rootfs" or indexed(key, "mp")]


def _volume(value: str) -> str:
    return parse_property_string(value, {"volume": {"default_key": 1}}).get("volume", "")


class SnapshotHandlers(LxcHandlers):
    def routes(self) -> Routes:
        return {
            ("GET", "/nodes/{node}/lxc/{vmid}/snapshot"): self.snapshot_list,
            ("POST", "/nodes/{node}/lxc/{vmid}/snapshot"): self.snapshot_create,
            ("GET", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}"): self.snapshot_index,
            ("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}"): self.snapshot_delete,
            ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback"): self.snapshot_rollback,
            ("GET", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config"): self.snapshot_config,
            ("PUT", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config"): self.snapshot_config_update,
            ("GET", "/nodes/{node}/lxc/{vmid}/feature"): self.feature,
        }

    # ------------------------------------------------------------------ helpers

    def can_snapshot(self, guest: SimGuest) -> bool:
        """PVE::LXC::Config->has_feature('snapshot'): every volume on a storage that can snapshot it."""
        config = guest.visible_config()
        for key in _volume_keys(config):
            volume = _volume(config[key])
            if volume.startswith("/"):
                return False
            storage = self.node.storages.get(volume.partition(":")[0])
            if storage is None or storage.type not in SNAPSHOT_STORAGES:
                return False
        return True

    def _zfs_volumes(self, guest: SimGuest) -> list[str]:
        volumes = [_volume(guest.config[key]) for key in _volume_keys(guest.config)]
        return [v for v in volumes if (s := self.node.storages.get(v.partition(":")[0])) and s.type == "zfspool"]

    @staticmethod
    def _snapshot(guest: SimGuest, name: str) -> SimSnapshot:
        snapshot = guest.snapshots.get(name)
        if snapshot is None:
            raise TaskError(f"snapshot '{name}' does not exist")
        return snapshot

    def _next_seq(self) -> int:
        return max((s.seq for g in self.node.guests.values() for s in g.snapshots.values()), default=0) + 1

    # ------------------------------------------------------------------ reads

    async def snapshot_list(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        guest = self._guest(ctx.vmid)
        result: list[dict[str, Any]] = []
        for snapshot in guest.snapshots.values():
            item: dict[str, Any] = {
                "name": snapshot.name,
                "snaptime": snapshot.snaptime,
                "description": snapshot.description,
            }
            if snapshot.parent is not None:
                item["parent"] = snapshot.parent
            if snapshot.snapstate:
                item["snapstate"] = snapshot.snapstate
            result.append(item)
        current: dict[str, Any] = {
            "name": "current",
            "digest": guests.digest(guest),
            "running": 1 if guest.status == "running" else 0,
            "description": "You are here!",
        }
        if "parent" in guest.config:
            current["parent"] = guest.config["parent"]
        result.append(current)
        return result

    async def snapshot_index(self, ctx: Ctx) -> Any:
        return [{"cmd": "rollback"}, {"cmd": "config"}]

    async def snapshot_config(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Snapshot", "VM.Snapshot.Rollback", "VM.Audit"], any_of=True)
        guest = self._guest(ctx.vmid)
        snapshot = guest.snapshots.get(ctx.path["snapname"])
        if snapshot is None:
            raise ApiError(500, f"snapshot '{ctx.path['snapname']}' does not exist")
        data: dict[str, Any] = dict(snapshot.config)
        data["snaptime"] = snapshot.snaptime
        if snapshot.description:
            data["description"] = snapshot.description
        if snapshot.snapstate:
            data["snapstate"] = snapshot.snapstate
        return data

    async def snapshot_config_update(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Snapshot"])
        description = ctx.params.get("description")
        if description is None:
            return None
        async with self.tasks.config_lock(ctx.vmid):
            guest = self._guest(ctx.vmid)
            self._check_lock(guest)
            snapshot = guest.snapshots.get(ctx.path["snapname"])
            if snapshot is None:
                raise ApiError(500, f"snapshot '{ctx.path['snapname']}' does not exist")
            snapshot.description = description
        return None

    async def feature(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        guest = self._guest(ctx.vmid)
        name = ctx.params.get("snapname")
        if name is not None and name not in guest.snapshots:
            raise ApiError(500, f"snapshot '{name}' does not exist")
        # Only `snapshot` is modelled; clone and copy follow the same storages here.
        return {"hasFeature": 1 if self.can_snapshot(guest) else 0}

    # ------------------------------------------------------------------ tasks

    async def snapshot_create(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Snapshot"])
        name = ctx.params["snapname"]
        if name in RESERVED:
            raise ApiError(500, f"unable to use snapshot name '{name}' (reserved name)")
        self._guest(ctx.vmid)
        vmid = ctx.vmid
        description = ctx.params.get("description", "")

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                if guest.config.get("template") == "1":
                    raise TaskError("you can't take a snapshot if it's a template")
                if guest.lock is not None:
                    raise TaskError(f"CT is locked ({guest.lock})")
                if name in guest.snapshots:
                    raise TaskError(f"snapshot name '{name}' already used")
                if not self.can_snapshot(guest):
                    raise TaskError("snapshot feature is not available")
                log.killpoint()
                config = {k: v for k, v in guest.config.items() if k not in _NOT_COPIED and not indexed(k, "unused")}
                snapshot = SimSnapshot(
                    name=name,
                    config=config,
                    snaptime=int(time.time()),
                    description=description,
                    parent=guest.config.get("parent"),
                    snapstate="prepare",
                    seq=self._next_seq(),
                )
                guest.snapshots[name] = snapshot
                guest.lock = "snapshot"
                running = guest.status == "running"
                if running:
                    log(f"freeze container {vmid}")
                if guest.rootfs is not None:
                    target = sandbox.snapshot_dir(self.node.data_dir, vmid, name)
                    await asyncio.to_thread(sandbox.copy_tree, guest.rootfs, target)
                    snapshot.tree = target
                for key in _volume_keys(guest.config):
                    log(f"snapshot '{name}' of volume '{_volume(guest.config[key])}'")
                if running:
                    log(f"thaw container {vmid}")
                snapshot.snapstate = None
                guest.lock = None
                guest.config["parent"] = name

        async def cleanup() -> None:
            # __snapshot_create failed: snapshot_delete(force) removes what was prepared.
            guest = self.node.guests.get(vmid)
            if guest is None:
                return
            snapshot = guest.snapshots.get(name)
            if snapshot is not None and snapshot.snapstate == "prepare":
                del guest.snapshots[name]
                if snapshot.tree is not None:
                    await asyncio.to_thread(sandbox.destroy_rootfs, snapshot.tree)
                if guest.lock == "snapshot":
                    guest.lock = None

        return self.tasks.start("vzsnapshot", vmid, ctx.who.authid, body, on_failure=cleanup)

    async def snapshot_delete(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Snapshot"])
        self._guest(ctx.vmid)
        vmid = ctx.vmid
        name = ctx.path["snapname"]
        force = ctx.flag("force")

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                snapshot = self._snapshot(guest, name)
                if guest.lock is not None and not (force and guest.lock == "snapshot-delete"):
                    raise TaskError(f"CT is locked ({guest.lock})")
                log.killpoint()
                guest.lock = "snapshot-delete"
                snapshot.snapstate = "delete"
                if snapshot.tree is not None:
                    await asyncio.to_thread(sandbox.destroy_rootfs, snapshot.tree)
                    snapshot.tree = None
                del guest.snapshots[name]
                for other in guest.snapshots.values():
                    if other.parent == name:
                        other.parent = snapshot.parent
                if guest.config.get("parent") == name:
                    if snapshot.parent is None:
                        del guest.config["parent"]
                    else:
                        guest.config["parent"] = snapshot.parent
                guest.lock = None

        return self.tasks.start("vzdelsnapshot", vmid, ctx.who.authid, body)

    async def snapshot_rollback(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Snapshot", "VM.Snapshot.Rollback"], any_of=True)
        self._guest(ctx.vmid)
        vmid = ctx.vmid
        name = ctx.path["snapname"]
        start = ctx.flag("start")

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                snapshot = self._snapshot(guest, name)
                for volid in self._zfs_volumes(guest):
                    if any(other.seq > snapshot.seq for other in guest.snapshots.values()):
                        raise TaskError(f"can't rollback, '{name}' is not most recent snapshot on '{volid}'")
                if snapshot.snapstate:
                    raise TaskError(f"unable to rollback to incomplete snapshot (snapstate = {snapshot.snapstate})")
                if guest.lock is not None:
                    raise TaskError(f"CT is locked ({guest.lock})")
                log.killpoint()
                if guest.status == "running":
                    # __snapshot_rollback_vm_stop: PVE::LXC::vm_stop($vmid, 1), lxc-stop --kill.
                    log(f"stopping CT {vmid} (rollback)")
                    self._power_off(guest)
                guest.lock = "rollback"
                if guest.rootfs is not None and snapshot.tree is not None:
                    await asyncio.to_thread(sandbox.restore_tree, snapshot.tree, guest.rootfs)
                for key in _volume_keys(snapshot.config):
                    log(f"rollback volume '{_volume(snapshot.config[key])}' to snapshot '{name}'")
                kept = {k: v for k, v in guest.config.items() if k == "description" or indexed(k, "unused")}
                guest.config = {**snapshot.config, **kept, "parent": name}
                guest.pending.clear()
                guest.pending_delete.clear()
                guest.lock = None
                if start:
                    self._power_on(guest, log)

        # A rollback that fails after taking its lock leaves `lock: rollback` (the container's state is undefined
        # until it is rolled back again), as on Proxmox.
        return self.tasks.start("vzrollback", vmid, ctx.who.authid, body)
