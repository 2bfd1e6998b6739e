"""A node's state kept in its data directory (``<data_dir>/<node>/state.json``), so a restarted simulator (the demo
restarted with the same data directory) still has its guests, volumes and task history.

What a restart looks like to a client: the node kept running. Guests keep their status and config; tasks that were
running when the simulator stopped end the way a killed Proxmox task does (exit status ``unexpected status``, and a
create caught half-way leaves its ``lock: create``). The containers' directory trees live under the data directory
already. Written atomically (a temporary file renamed over the old one), only when something changed.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

from infrahaus_pvesim.state import SimGuest, SimNode, SimTask
from infrahaus_pvesim.tasks import UNEXPECTED_STATUS

STATE_FILE = "state.json"
_VERSION = 1


def state_path(node: SimNode) -> Path:
    return node.data_dir / STATE_FILE


def dump(node: SimNode) -> str:
    """The node's persistent state as JSON text (stable key order, so unchanged state gives the same text)."""
    data: dict[str, Any] = {
        "version": _VERSION,
        "guests": [_guest(g) for g in sorted(node.guests.values(), key=lambda g: g.vmid)],
        "volumes": {name: storage.volumes for name, storage in sorted(node.storages.items())},
        "tasks": [_task(t) for t in sorted(node.tasks.values(), key=lambda t: t.started_seq)],
    }
    return json.dumps(data, sort_keys=True, indent=1)


def save(node: SimNode, text: str | None = None) -> None:
    path = state_path(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(dump(node) if text is None else text)
    os.replace(temporary, path)


def load(node: SimNode) -> bool:
    """Restore the node's guests, volumes and tasks from its state file; False when there is none (a new node)."""
    path = state_path(node)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    if data.get("version") != _VERSION:
        raise ValueError(f"{path}: unknown simulator state version {data.get('version')!r}")
    node.guests = {g.vmid: g for g in (_load_guest(item) for item in data["guests"])}
    for name, volumes in data["volumes"].items():
        storage = node.storages.get(name)
        if storage is not None:
            storage.volumes = {volid: int(size) for volid, size in volumes.items()}
    node.tasks = {}
    last = max([0, *(max(t["started_seq"], t["ended_seq"]) for t in data["tasks"])])
    for item in data["tasks"]:
        task = SimTask(**item)
        if task.status == "running":
            # The simulator stopped under it: as a Proxmox task whose process died (it ends now, in that order).
            last += 1
            task.status, task.exitstatus, task.endtime = "stopped", UNEXPECTED_STATUS, int(time.time())
            task.ended_seq = last
        node.tasks[task.upid] = task
    return True


def _guest(guest: SimGuest) -> dict[str, Any]:
    return {
        "vmid": guest.vmid,
        "type": guest.type,
        "config": guest.config,
        "status": guest.status,
        "lock": guest.lock,
        "pending": guest.pending,
        "pending_delete": sorted(guest.pending_delete),
        "creating": guest.creating,
        "rootfs": str(guest.rootfs) if guest.rootfs is not None else None,
        "started_at": guest.started_at,
        "ipv4": guest.ipv4,
        "ipv6": guest.ipv6,
    }


def _load_guest(item: dict[str, Any]) -> SimGuest:
    rootfs = Path(item["rootfs"]) if item.get("rootfs") else None
    return SimGuest(
        vmid=int(item["vmid"]),
        type=item["type"],
        config=dict(item["config"]),
        status=item["status"],
        lock=item.get("lock"),
        pending=dict(item.get("pending", {})),
        pending_delete=set(item.get("pending_delete", [])),
        creating=bool(item.get("creating", False)),
        rootfs=rootfs if rootfs is not None and rootfs.is_dir() else None,
        started_at=item.get("started_at"),
        ipv4=item.get("ipv4"),
        ipv6=item.get("ipv6"),
    )


def _task(task: SimTask) -> dict[str, Any]:
    return {
        "upid": task.upid,
        "node": task.node,
        "type": task.type,
        "id": task.id,
        "user": task.user,
        "starttime": task.starttime,
        "status": task.status,
        "exitstatus": task.exitstatus,
        "log": task.log,
        "endtime": task.endtime,
        "started_seq": task.started_seq,
        "ended_seq": task.ended_seq,
    }


__all__ = ["STATE_FILE", "dump", "load", "save", "state_path"]
