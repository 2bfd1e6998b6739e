"""/nodes/{node}/lxc: container list, create, config, pending, status, lifecycle, delete, interfaces (and the VM list,
which exists only so VMIDs taken by VMs are seen the way Proxmox shows them).

Modelled on pve-container (PVE 8, branch stable-bookworm):

- ``src/PVE/API2/LXC.pm`` ``create_vm``: in the call, in this order: VMID unused, SSH keys valid (500 ``SSH public
  key validation error``), ``VM.Allocate``, per-option privileges (`_check_modify_perm`), the template's storage
  and access, each target storage (500 ``storage 'x' does not exist``, 400 ``errors.storage`` without ``rootdir``,
  ``Datastore.AllocateSpace``), then ``create_and_lock_config`` (5 s file lock; a config holding only
  ``lock: create``). The ``vzcreate`` task allocates the disks, extracts the template (``can't find file``), and its
  first full config write drops the lock. ``start=1`` forks a separate ``vzstart`` task.
- ``src/PVE/API2/LXC/Status.pm``: start/stop/shutdown only check the running state in the call; the config file
  lock (10 s) and ``check_lock`` (``CT is locked (<lock>)``) run inside the task. Reboot takes the file lock but does
  not check the config lock: it stops, and the start's pre-start hook then fails a locked container.
- ``destroy_vm`` and ``PUT …/config`` (``API2/LXC/Config.pm`` ``update_vm``) check the lock in the call (500).
- ``ip`` (``…/interfaces``, ``src/PVE/LXC.pm`` ``get_interfaces``): ``null`` when there is no container process.

Guests, their locks and their tasks live here; the SSH side (``ssh.py``, ``sandbox.py``) owns each container's
directory tree, which a create task populates and a destroy task removes.
"""

import asyncio
import base64
import binascii
import builtins
import contextlib
import hashlib
import ipaddress
import os
import re
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infrahaus_pvesim import guests, sandbox
from infrahaus_pvesim.access import AccessError, Principal
from infrahaus_pvesim.http.common import MIB, ApiError, Ctx, ResourceHandlers, Routes, param_error, size_bytes
from infrahaus_pvesim.schema import parse_property_string
from infrahaus_pvesim.state import SimGuest, SimNode, SimStorage
from infrahaus_pvesim.tasks import LockTimeout, TaskError, TaskLog

# Proxmox's OUI for generated guest MAC addresses.
_MAC_PREFIX = "BC:24:11"
_CONFIG_PERMS = ["VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options"]
# Create parameters extracted before the per-option privilege check (they need none of their own).
_EXTRACTED = ("ignore-unpack-errors", "bwlimit", "start", "unprivileged", "restore", "unique", "force")
_SSH_KEY_TYPES = {
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}


def memory_used(guest: SimGuest) -> int:
    """What a guest's memory use looks like: 30 % of its maximum while running."""
    if guest.status != "running":
        return 0
    return int(size_bytes(guest.config.get("memory", "512") + "M") * 0.3)


def _disk_size(config: Mapping[str, str]) -> int:
    disk = config.get("rootfs") or config.get("scsi0") or ""
    for part in disk.split(","):
        if part.startswith("size="):
            return size_bytes(part[5:])
    return 0


def guest_entry(guest: SimGuest) -> dict[str, Any]:
    """The guest as the ``lxc``/``qemu`` lists show it (``/cluster/resources`` adds its id and node)."""
    config = guest.visible_config()
    maxmem = int(config.get("memory", "512")) * MIB
    running = guest.status == "running"
    maxdisk = _disk_size(config)
    entry: dict[str, Any] = {
        "vmid": guest.vmid,
        "name": config.get("hostname" if guest.type == "lxc" else "name", f"CT{guest.vmid}"),
        "status": guest.status,
        "type": guest.type,
        "uptime": guest.uptime,
        "cpu": 0.012 if running else 0,
        "cpus": int(config.get("cores", "1")),
        "maxmem": maxmem,
        "mem": memory_used(guest),
        "maxdisk": maxdisk,
        "disk": maxdisk // 5 if running else 0,
        "netin": 123456 if running else 0,
        "netout": 65432 if running else 0,
        "diskread": 0,
        "diskwrite": 0,
    }
    if config.get("template") == "1":
        entry["template"] = 1
    if guest.type == "lxc":
        entry["maxswap"] = int(config.get("swap", "512")) * MIB
        entry["swap"] = 0
    if guest.lock:
        entry["lock"] = guest.lock
    if "tags" in config:
        entry["tags"] = config["tags"]
    return entry


def visible(access: Any, principal: Principal, guest: SimGuest) -> bool:
    """Whether `principal` sees `guest` in lists (``VM.Audit`` on its path)."""
    return "VM.Audit" in access.privileges(principal, f"/vms/{guest.vmid}")


def _validate_ssh_keys(keys: str) -> None:
    """pve-common Tools.pm validate_ssh_public_keys (``ssh-keygen -l`` per line): 500 on anything unreadable."""
    for line in keys.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        key_index = next((i for i, f in enumerate(fields) if f in _SSH_KEY_TYPES), None)
        ok = key_index is not None and key_index + 1 < len(fields)
        if ok:
            assert key_index is not None
            try:
                blob = base64.b64decode(fields[key_index + 1], validate=True)
            except (binascii.Error, ValueError):
                ok = False
            else:
                length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
                ok = blob[4 : 4 + length].decode(errors="replace") == fields[key_index]
        if not ok:
            raise ApiError(500, "SSH public key validation error")


class LxcHandlers(ResourceHandlers):
    def routes(self) -> Routes:
        return {
            ("GET", "/nodes/{node}/lxc"): self.list,
            ("POST", "/nodes/{node}/lxc"): self.create,
            ("GET", "/nodes/{node}/qemu"): self.qemu_list,
            ("GET", "/nodes/{node}/lxc/{vmid}"): self.index,
            ("DELETE", "/nodes/{node}/lxc/{vmid}"): self.delete,
            ("GET", "/nodes/{node}/lxc/{vmid}/config"): self.config_read,
            ("PUT", "/nodes/{node}/lxc/{vmid}/config"): self.config_update,
            ("GET", "/nodes/{node}/lxc/{vmid}/pending"): self.pending,
            ("GET", "/nodes/{node}/lxc/{vmid}/status"): self.status_index,
            ("GET", "/nodes/{node}/lxc/{vmid}/status/current"): self.status,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/start"): self.start,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/stop"): self.stop,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"): self.shutdown,
            ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot"): self.reboot,
            ("GET", "/nodes/{node}/lxc/{vmid}/interfaces"): self.interfaces,
        }

    # ------------------------------------------------------------------ lookups and checks

    def _missing(self, vmid: int) -> str:
        return f"Configuration file '{self.node.config_path(vmid, 'lxc')}' does not exist"

    def _guest(self, vmid: int, type: str = "lxc") -> SimGuest:
        guest = self.node.guests.get(vmid)
        if guest is None or guest.type != type:
            raise ApiError(500, self._missing(vmid))
        return guest

    def _task_guest(self, vmid: int) -> SimGuest:
        """The guest as a task reloads it under the file lock (it may have gone meanwhile)."""
        guest = self.node.guests.get(vmid)
        if guest is None or guest.type != "lxc":
            raise TaskError(self._missing(vmid))
        return guest

    @staticmethod
    def _check_lock(guest: SimGuest) -> None:
        if guest.lock is not None:
            raise ApiError(500, f"CT is locked ({guest.lock})")

    def _check_skiplock(self, ctx: Ctx) -> bool:
        skiplock = ctx.flag("skiplock")
        if skiplock and not ctx.who.is_root:
            raise param_error({"skiplock": "Only root may use this option."})
        return skiplock

    def _check_modify_perm(
        self,
        principal: Principal,
        vmid: int,
        params: Mapping[str, str],
        old: Mapping[str, str] | None,
        unprivileged: bool,
        *,
        delete: bool = False,
    ) -> None:
        """PVE::LXC::check_ct_modify_config_perm: per-option privileges and the root@pam-only options."""
        if principal.is_root:
            return
        path = f"/vms/{vmid}"
        for key, value in params.items():
            if key in ("cores", "cpuunits", "cpulimit"):
                self.access.check(principal, path, ["VM.Config.CPU"])
            elif key == "rootfs" or _indexed(key, "mp"):
                self.access.check(principal, path, ["VM.Config.Disk"])
                if delete:
                    continue
                volume = parse_property_string(value, {"volume": {"default_key": 1}}).get("volume", "")
                if volume.startswith("/"):
                    kind = "device" if volume.startswith("/dev/") else "bind"
                    message = f"mount point type {kind} is only allowed for root@pam"
                    raise AccessError(403, f"Permission check failed ({message})")
                if re.fullmatch(r"[^:\s]+:\d+(\.\d+)?", volume):
                    self.access.check(principal, f"/storage/{volume.partition(':')[0]}", ["Datastore.AllocateSpace"])
            elif key in ("memory", "swap"):
                self.access.check(principal, path, ["VM.Config.Memory"])
            elif _indexed(key, "net"):
                self.access.check(principal, path, ["VM.Config.Network"])
                for raw in (old.get(key) if old else None, None if delete else value):
                    if raw:
                        self._check_bridge_access(principal, raw)
            elif _indexed(key, "dev"):
                message = "configuring device passthrough is only allowed for root@pam"
                raise AccessError(403, f"Permission check failed ({message})")
            elif key in ("nameserver", "searchdomain", "hostname"):
                self.access.check(principal, path, ["VM.Config.Network"])
            elif key == "features":
                self._check_features(principal, vmid, old, None if delete else value, unprivileged)
            elif key == "hookscript":
                raise AccessError(403, "Permission check failed (changing the hookscript is only allowed for root@pam)")
            else:
                # tags (with the default user-tag-access "free") and everything else.
                self.access.check(principal, path, ["VM.Config.Options"])

    def _check_bridge_access(self, principal: Principal, raw: str) -> None:
        """pve-guest-common GuestHelpers.pm check_vnet_access: SDN.Use on the bridge (or on each VLAN of it)."""
        net = parse_property_string(raw, {})
        bridge, tag, trunks = net.get("bridge"), net.get("tag"), net.get("trunks")
        if bridge is None:
            return
        base = f"/sdn/zones/localnetwork/{bridge}"
        if tag:
            self.access.check(principal, f"{base}/{tag}", ["SDN.Use"])
        for vlan in sorted(filter(None, (trunks or "").split(";"))):
            self.access.check(principal, f"{base}/{vlan}", ["SDN.Use"])
        if not (tag or trunks):
            self.access.check(principal, base, ["SDN.Use"])

    def _check_features(
        self, principal: Principal, vmid: int, old: Mapping[str, str] | None, value: str | None, unprivileged: bool
    ) -> None:
        if not unprivileged:
            raise AccessError(
                403,
                "Permission check failed (changing feature flags for privileged container is only allowed for"
                " root@pam)",
            )
        before = _features(old.get("features", "")) if old else {}
        if value is None:
            changed = set(before)
        elif before:
            changed = {k for k in set(before) | set(_features(value)) if before.get(k) != _features(value).get(k)}
        else:
            changed = set(_features(value))
        if changed - {"nesting"}:
            raise AccessError(
                403, "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
            )
        if changed:
            self.access.check(principal, f"/vms/{vmid}", ["VM.Allocate"])

    def _check_volume_access(self, principal: Principal, volid: str, content: str) -> SimStorage:
        """pve-storage Storage.pm check_volume_access for a template: its storage, content type and privileges."""
        storage_id, _, volname = volid.partition(":")
        storage = self.node.storages.get(storage_id)
        if storage is None:
            raise ApiError(500, f"storage '{storage_id}' does not exist")
        if not volname.startswith(f"{content}/"):
            raise ApiError(500, f"unable to use volume {volid} - content type needs to be '{content}'")
        path = f"/storage/{storage_id}"
        if not self.access.can(principal, path, ["Datastore.Allocate"]):
            self.access.check(principal, path, ["Datastore.AllocateSpace", "Datastore.Audit"], any_of=True)
        return storage

    def _check_target_storage(self, principal: Principal, storage_id: str) -> None:
        """create_vm's $check_and_activate_storage."""
        storage = self.node.storages.get(storage_id)
        if storage is None:
            raise ApiError(500, f"storage '{storage_id}' does not exist")
        if "rootdir" not in storage.content:
            raise param_error({"storage": f"storage '{storage_id}' does not support container directories"})
        self.access.check(principal, f"/storage/{storage_id}", ["Datastore.AllocateSpace"])

    def _check_vmid_unused(self, vmid: int) -> None:
        existing = self.node.guests.get(vmid)
        if existing is not None:
            kind = "CT" if existing.type == "lxc" else "VM"
            raise ApiError(500, f"{kind} {vmid} already exists on node '{self.node.name}'")

    # ------------------------------------------------------------------ lists

    async def list(self, ctx: Ctx) -> Any:
        listed = sorted(self.node.guests.values(), key=lambda g: g.vmid)
        return [guest_entry(g) for g in listed if g.type == "lxc" and visible(self.access, ctx.who, g)]

    async def qemu_list(self, ctx: Ctx) -> Any:
        listed = sorted(self.node.guests.values(), key=lambda g: g.vmid)
        return [guest_entry(g) for g in listed if g.type == "qemu" and visible(self.access, ctx.who, g)]

    async def index(self, ctx: Ctx) -> Any:
        self._guest(ctx.vmid)
        subdirs = ["config", "status", "vncproxy", "termproxy", "vncwebsocket", "spiceproxy", "migrate", "clone"]
        subdirs += ["firewall", "snapshot", "rrd", "rrddata", "pending", "feature", "template", "interfaces", "mtunnel"]
        return [{"subdir": s} for s in subdirs]

    # ------------------------------------------------------------------ create

    async def create(self, ctx: Ctx) -> Any:
        who = ctx.who
        params = {k: v for k, v in ctx.params.items() if k != "node"}
        vmid = int(params.pop("vmid"))
        start_after = params.get("start") == "1"
        # PVE 8: no code default, so a create without unprivileged=1 makes a privileged container.
        unprivileged = params.get("unprivileged") == "1"
        for key in _EXTRACTED:
            params.pop(key, None)
        self._check_vmid_unused(vmid)
        params.pop("password", None)
        ssh_keys = params.pop("ssh-public-keys", None)
        if ssh_keys is not None:
            _validate_ssh_keys(ssh_keys)
        pool = params.pop("pool", None)
        if pool is not None:
            raise AccessError(403, f"Permission check failed (pool '{pool}' does not exist)")
        if not self.access.can(who, f"/vms/{vmid}", ["VM.Allocate"]):
            raise AccessError(403, "Permission check failed")
        ostemplate = params.pop("ostemplate")
        storage = params.pop("storage", "local")
        self._check_modify_perm(who, vmid, params, None, unprivileged)
        self._check_volume_access(who, ostemplate, "vztmpl")
        # foreach_volume order: rootfs, then mp0, mp1, ... (volume names are numbered in that order).
        disk_keys = sorted((k for k in params if k == "rootfs" or _indexed(k, "mp")), key=_volume_order)
        disks = {k: params[k] for k in disk_keys}
        for key, value in disks.items():
            if re.fullmatch(r"\d+(\.\d+)?", value.split(",")[0]):
                disks[key] = f"{storage}:{value}"
        if disks and "rootfs" not in disks:
            raise ApiError(500, "mount points configured, but 'rootfs' not set - aborting")
        for value in disks.values():
            volume = parse_property_string(value, {"volume": {"default_key": 1}}).get("volume", "")
            if not volume.startswith("/"):
                self._check_target_storage(who, volume.partition(":")[0])
        if not disks:
            self._check_target_storage(who, storage)
            disks = {"rootfs": f"{storage}:4"}
        config = self._initial_config(vmid, {k: v for k, v in params.items() if k not in disks}, ostemplate)
        if unprivileged:
            config["unprivileged"] = "1"
        try:
            async with self.tasks.config_lock(vmid, timeout=self.tasks.lock_timeout / 2):
                try:
                    self._check_vmid_unused(vmid)
                except ApiError as exc:
                    raise ApiError(500, f"unable to create CT {vmid} - {exc.message}") from None
                guest = SimGuest(vmid=vmid, type="lxc", config=config, lock="create", creating=True)
                self.node.guests[vmid] = guest
        except LockTimeout as exc:
            raise ApiError(500, f"unable to create CT {vmid} - {exc}") from None
        allocated: builtins.list[str] = []

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                await self._create_body(log, guest, ostemplate, disks, ssh_keys, allocated)
            if start_after:
                # The create worker calls the start API, which forks its own task (pve-container create_vm).
                self._fork_start(vmid, who.authid, skiplock=False)

        def rollback() -> None:
            if self.node.guests.get(vmid) is guest:
                del self.node.guests[vmid]
            self._free(allocated)
            if guest.rootfs is not None:
                sandbox.destroy_rootfs(guest.rootfs)
                guest.rootfs = None

        return self.tasks.start("vzcreate", vmid, who.authid, body, on_failure=rollback)

    def _initial_config(self, vmid: int, params: Mapping[str, str], ostemplate: str) -> dict[str, str]:
        config: dict[str, str] = {
            "arch": params.get("arch", "amd64"),
            "hostname": params.get("hostname", f"CT{vmid}"),
            "memory": params.get("memory", "512"),
            "swap": params.get("swap", "512"),
            "ostype": params.get("ostype") or _ostype_for(ostemplate),
        }
        for key, value in params.items():
            if key == "lock":
                continue
            if _indexed(key, "net"):
                config[key] = self._normalize_net(vmid, key, value)
            elif key == "features":
                config[key] = _print_property_string(_features(value))
            elif key == "tags":
                config[key] = guests.normalize_tags(value)
            elif key == "description":
                text = guests.stored_description(value)
                if text:
                    config[key] = text
            elif guests.option_exists(key):
                config[key] = value
        return config

    def _normalize_net(self, vmid: int, key: str, value: str) -> str:
        return normalize_net(self.node, vmid, key, value)

    def _owned_volumes(self, vmid: int) -> builtins.list[str]:
        owned = (f":vm-{vmid}-", f":subvol-{vmid}-", f":{vmid}/vm-{vmid}-")
        return [v for s in self.node.storages.values() for v in s.volumes if any(o in v for o in owned)]

    def _free(self, volids: builtins.list[str], log: TaskLog | None = None) -> None:
        for volid in volids:
            storage = self.node.storages.get(volid.partition(":")[0])
            if storage is None or volid not in storage.volumes:
                continue
            del storage.volumes[volid]
            if log is not None:
                kind = "Logical volume" if storage.type.startswith("lvm") else "Volume"
                log(f'  {kind} "{volid.split(":", 1)[1]}" successfully removed.')

    def _allocate_disk(self, log: TaskLog, vmid: int, spec: str) -> tuple[str, str | None]:
        """Allocate ``storage:size`` (GiB) with PVE's volume name for the storage type; returns (config value,
        volid)."""
        options = parse_property_string(spec, {"volume": {"default_key": 1}})
        storage_id, _, size_spec = options.pop("volume", "").partition(":")
        if storage_id.startswith("/"):
            # A bind mount (root@pam only, checked at request time): nothing to allocate.
            return spec, None
        storage = self.node.storages[storage_id]
        size_gib = size_spec if size_spec.replace(".", "", 1).isdigit() else "8"
        index = 0
        while True:
            volname = _volume_name(storage, vmid, index)
            if f"{storage_id}:{volname}" not in storage.volumes:
                break
            index += 1
        volid = f"{storage_id}:{volname}"
        storage.volumes[volid] = size_bytes(f"{size_gib}G")
        kind = "Logical volume" if storage.type.startswith("lvm") else "Volume"
        log(f'  {kind} "{volname.rsplit("/", 1)[-1]}" created.')
        log(f"Creating filesystem with {size_bytes(size_gib + 'G') // 4096} 4k blocks and 524288 inodes")
        options.pop("size", None)
        rest = "".join(f",{k}={v}" for k, v in sorted(options.items()))
        return f"{volid}{rest},size={size_gib}G", volid

    async def _create_body(
        self,
        log: TaskLog,
        guest: SimGuest,
        ostemplate: str,
        disks: Mapping[str, str],
        ssh_keys: str | None,
        allocated: builtins.list[str],
    ) -> None:
        vmid = guest.vmid
        values: dict[str, str] = {}
        for key, spec in disks.items():
            value, volid = self._allocate_disk(log, vmid, spec)
            values[key] = value
            if volid is not None:
                allocated.append(volid)
        # A crash here leaves what a real node leaves: the config holding only `lock: create`, and the disk.
        log.killpoint()
        template_storage = self.node.storages[ostemplate.partition(":")[0]]
        if ostemplate not in template_storage.volumes:
            raise TaskError(f"unable to create CT {vmid} - can't find file '{ostemplate}'")
        archive = f"/var/lib/vz/template/cache/{ostemplate.split('/', 1)[-1]}"
        log(f"extracting archive '{archive}'")
        try:
            guest.rootfs = await asyncio.to_thread(
                sandbox.create_rootfs, self.node.data_dir, vmid, ostemplate, hostname=guest.config.get("hostname")
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise TaskError(f"unable to create CT {vmid} - {exc}") from exc
        log(f"Total bytes read: 528793600 (505MiB, {120 + vmid % 50}MiB/s)")
        log(f"Detected container architecture: {guest.config.get('arch', 'amd64')}")
        # The first full write of the config: it has no `lock` key.
        guest.config.update(values)
        guest.creating = False
        guest.lock = None
        if ssh_keys:
            await asyncio.to_thread(_install_ssh_keys, guest.rootfs, ssh_keys)
        log("Creating SSH host key 'ssh_host_ed25519_key' - this may take some time ...")
        digest = hashlib.sha256(f"{self.node.name}/{vmid}".encode()).hexdigest()[:43]
        log(f"done: SHA256:{digest} root@{guest.config.get('hostname', f'CT{vmid}')}")

    # ------------------------------------------------------------------ config

    async def config_read(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        guest = self._guest(ctx.vmid)
        return guests.read_config(guest, current=ctx.flag("current"))

    async def pending(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        return guests.pending_list(self._guest(ctx.vmid))

    async def config_update(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", _CONFIG_PERMS, any_of=True)
        params = {k: v for k, v in ctx.params.items() if k not in ("node", "vmid", "digest", "delete", "revert")}
        delete = guests.split_list(ctx.params.get("delete", ""))
        revert = guests.split_list(ctx.params.get("revert", ""))
        if not params and not delete and not revert:
            raise ApiError(500, "no options specified")
        try:
            async with self.tasks.config_lock(ctx.vmid):
                self._update_locked(ctx.who, ctx.vmid, params, delete, revert, ctx.params.get("digest"))
        except LockTimeout as exc:
            raise ApiError(500, str(exc)) from None
        return None

    def _update_locked(
        self,
        who: Principal,
        vmid: int,
        params: dict[str, str],
        delete: builtins.list[str],
        revert: builtins.list[str],
        digest: str | None,
    ) -> None:
        guest = self._guest(vmid)
        self._check_lock(guest)
        if digest is not None and digest != guests.digest(guest):
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
        unprivileged = guest.config.get("unprivileged") == "1"
        old = guest.visible_config()
        self._check_modify_perm(who, vmid, dict.fromkeys(delete, ""), old, unprivileged, delete=True)
        self._check_modify_perm(who, vmid, dict.fromkeys(revert, ""), old, unprivileged, delete=True)
        self._check_modify_perm(who, vmid, params, old, unprivileged)
        apply_config_update(self.node, guest, params, delete, revert)

    # ------------------------------------------------------------------ status and power

    async def status_index(self, ctx: Ctx) -> Any:
        self._guest(ctx.vmid)
        return [{"subdir": s} for s in ("current", "start", "stop", "shutdown", "reboot", "suspend", "resume")]

    async def status(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        guest = self._guest(ctx.vmid)
        entry = guest_entry(guest)
        entry["ha"] = {"managed": 0}
        if guest.status == "running":
            entry["pid"] = 100000 + guest.vmid
        return entry

    def _power_on(self, guest: SimGuest, log: TaskLog) -> None:
        guests.apply_pending(guest)
        for key, value in sorted(guest.config.items()):
            if _indexed(key, "net"):
                bridge = parse_property_string(value, {}).get("bridge")
                if bridge is not None and bridge not in self.node.bridges:
                    # The network hook's message only lands in the log; the task reports the failed start.
                    log(f"bridge '{bridge}' does not exist")
                    raise TaskError(f"startup for container '{guest.vmid}' failed")
        guest.status = "running"
        guest.started_at = time.time()
        guest.ipv4, guest.ipv6 = guest_addresses(self.node, guest)
        net0 = parse_property_string(guest.config.get("net0", ""), {}) if "net0" in guest.config else {}
        delay = self.config.dhcp_lease_delay
        guest.lease_at = time.monotonic() + delay if net0.get("ip") == "dhcp" and delay > 0 else None
        if guest.rootfs is not None:
            sandbox.set_network(guest.rootfs, guest.ipv4 if guest.leased else None, guest.ipv6)
            if not guest.leased:
                started = guest.started_at
                asyncio.get_running_loop().call_later(delay, self._lease, guest, started)
        log(f"starting CT {guest.vmid}")

    @staticmethod
    def _lease(guest: SimGuest, started: float | None) -> None:
        if guest.status == "running" and guest.started_at == started and guest.rootfs is not None:
            sandbox.set_network(guest.rootfs, guest.ipv4, guest.ipv6)

    @staticmethod
    def _power_off(guest: SimGuest) -> None:
        guest.status = "stopped"
        guest.started_at = None
        guest.ipv4 = guest.ipv6 = None
        guest.lease_at = None
        # Everything running inside dies with the container (lxc-attach'ed commands included).
        for pgid in list(guest.processes):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        guest.processes.clear()

    def _fork_start(self, vmid: int, authid: str, *, skiplock: bool) -> str:
        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                if guest.config.get("template") == "1":
                    raise TaskError("you can't start a CT if it's a template")
                if not skiplock and guest.lock not in (None, "mounted"):
                    raise TaskError(f"CT is locked ({guest.lock})")
                log.killpoint()
                if guest.status != "running":
                    self._power_on(guest, log)

        return self.tasks.start("vzstart", vmid, authid, body)

    async def start(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.PowerMgmt"])
        skiplock = self._check_skiplock(ctx)
        guest = self.node.guests.get(ctx.vmid)
        if guest is not None and guest.status == "running":
            raise ApiError(500, f"CT {ctx.vmid} already running")
        return self._fork_start(ctx.vmid, ctx.who.authid, skiplock=skiplock)

    def _running(self, vmid: int, *, word: str = "CT") -> SimGuest:
        guest = self.node.guests.get(vmid)
        if guest is None or guest.type != "lxc" or guest.status != "running":
            raise ApiError(500, f"{word} {vmid} not running")
        return guest

    async def stop(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.PowerMgmt"])
        skiplock = self._check_skiplock(ctx)
        self._running(ctx.vmid)
        vmid = ctx.vmid

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                if not skiplock and guest.lock not in (None, "mounted"):
                    raise TaskError(f"CT is locked ({guest.lock})")
                log.killpoint()
                self._power_off(guest)

        return self.tasks.start("vzstop", vmid, ctx.who.authid, body)

    async def shutdown(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.PowerMgmt"])
        self._running(ctx.vmid)
        vmid = ctx.vmid
        timeout = ctx.integer("timeout", 60) or 0
        force = ctx.flag("forceStop")

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                if guest.lock is not None:
                    raise TaskError(f"CT is locked ({guest.lock})")
                log.killpoint()
                if guest.vmid in self.faults.ignoring_shutdown:
                    # lxc-stop waits out the timeout; with forceStop it then kills the container. Without,
                    # PVE::LXC::vm_stop warns and polls the command socket another timeout + 5 s.
                    await asyncio.sleep(timeout)
                    if not force:
                        log(f"command 'lxc-stop -n {vmid} --nokill --timeout {timeout}' failed: exit code 1")
                        await asyncio.sleep(timeout + 5)
                        raise TaskError("container did not stop")
                self._power_off(guest)

        return self.tasks.start("vzshutdown", vmid, ctx.who.authid, body)

    async def reboot(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.PowerMgmt"])
        self._running(ctx.vmid, word="VM")
        vmid = ctx.vmid

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                log.killpoint()
                self._power_off(guest)
                if guest.lock is not None:
                    # vm_reboot does not check the lock; the start's pre-start hook does.
                    log(f"CT is locked ({guest.lock})")
                    raise TaskError(f"startup for container '{vmid}' failed")
                self._power_on(guest, log)

        return self.tasks.start("vzreboot", vmid, ctx.who.authid, body)

    # ------------------------------------------------------------------ delete

    def _destroy_checks(self, guest: SimGuest, force: bool) -> None:
        if guest.config.get("protection") == "1":
            raise ApiError(500, f"can't remove CT {guest.vmid} - protection mode enabled")
        self._check_lock(guest)
        if guest.status == "running" and not force:
            raise ApiError(500, f"unable to destroy CT {guest.vmid} - container is running")

    async def delete(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Allocate"])
        vmid = ctx.vmid
        force = ctx.flag("force")
        self._destroy_checks(self._guest(vmid), force)
        purge = ctx.flag("purge")
        unreferenced = ctx.flag("destroy-unreferenced-disks")

        async def body(log: TaskLog) -> None:
            async with self.tasks.task_lock(vmid, log):
                guest = self._task_guest(vmid)
                try:
                    self._destroy_checks(guest, force)
                except ApiError as exc:
                    raise TaskError(exc.message) from None
                log.killpoint()
                if guest.status == "running":
                    log(f"forced to stop CT {vmid} before destroying!")
                    self._power_off(guest)
                guest.lock = "destroyed"
                config = guest.visible_config()
                volumes = [k for k in config if k == "rootfs" or _indexed(k, "mp") or _indexed(k, "unused")]
                referenced = [config[k].split(",")[0] for k in volumes]
                self._free(referenced, log)
                if unreferenced:
                    self._free(self._owned_volumes(vmid), log)
                if guest.rootfs is not None:
                    await asyncio.to_thread(sandbox.destroy_rootfs, guest.rootfs)
                    guest.rootfs = None
                for snapshot in guest.snapshots.values():
                    # Volume snapshots go with their volumes.
                    if snapshot.tree is not None:
                        await asyncio.to_thread(sandbox.destroy_rootfs, snapshot.tree)
                        snapshot.tree = None
                if purge:
                    log(f"purging CT {vmid} from related configurations..")
                if self.node.guests.get(vmid) is guest:
                    del self.node.guests[vmid]

        def restore() -> None:
            guest = self.node.guests.get(vmid)
            if guest is not None and guest.lock == "destroyed":
                guest.lock = None

        return self.tasks.start("vzdestroy", vmid, ctx.who.authid, body, on_failure=restore)

    # ------------------------------------------------------------------ interfaces

    async def interfaces(self, ctx: Ctx) -> Any:
        self.access.check(ctx.who, f"/vms/{ctx.vmid}", ["VM.Audit"])
        guest = self.node.guests.get(ctx.vmid)
        if guest is None or guest.type != "lxc" or guest.status != "running":
            # get_interfaces: no container process (stopped, or no such container) -> undef.
            return None
        result = [
            _interface("lo", "00:00:00:00:00:00", "127.0.0.1/8", "::1/128"),
        ]
        for key in sorted(k for k in guest.config if _indexed(k, "net")):
            net = parse_property_string(guest.config[key], {})
            ipv4 = guest.ipv4 if key == "net0" and guest.leased else None
            ipv6 = guest.ipv6 if key == "net0" else None
            result.append(_interface(net.get("name", "eth0"), net.get("hwaddr", "").lower(), ipv4, ipv6))
        return result


def apply_config_update(
    node: SimNode, guest: SimGuest, params: Mapping[str, str], delete: list[str], revert: list[str]
) -> None:
    """update_pct_config with the values printed the way PVE stores them; raises ApiError."""
    values: dict[str, str] = {}
    for key, value in params.items():
        if _indexed(key, "net"):
            value = normalize_net(node, guest.vmid, key, value)
        elif key == "features":
            value = _print_property_string(_features(value))
        values[key] = value
    try:
        guests.update_config(guest, values, delete=delete, revert=revert, running=guest.status == "running")
    except guests.ConfigError as exc:
        raise ApiError(exc.status, exc.message, exc.errors) from None


def normalize_net(node: SimNode, vmid: int, key: str, value: str) -> str:
    """A ``netN`` value as PVE stores it: ``name`` first, a generated MAC and ``type=veth`` added."""
    parsed = parse_property_string(value, {"name": {}})
    parsed.setdefault("hwaddr", _mac_for(f"{node.name}/{vmid}/{key}/{time.time_ns()}"))
    parsed.setdefault("type", "veth")
    return _print_property_string(parsed, first=("name",))


def _interface(name: str, mac: str, ipv4: str | None, ipv6: str | None) -> dict[str, Any]:
    """One entry of ``…/interfaces`` (pve-container LXC.pm get_interfaces, from ``ip --json a``)."""
    entry: dict[str, Any] = {"name": name, "hwaddr": mac, "hardware-address": mac}
    addresses: list[dict[str, Any]] = []
    for family, cidr in (("inet", ipv4), ("inet6", ipv6)):
        if cidr is None:
            continue
        entry[family] = cidr
        address, _, prefix = cidr.partition("/")
        addresses.append({"ip-address": address, "ip-address-type": family, "prefix": int(prefix or 0)})
    entry["ip-addresses"] = addresses
    return entry


def guest_addresses(node: SimNode, guest: SimGuest) -> tuple[str | None, str | None]:
    """The IPv4 (CIDR) and IPv6 addresses a running guest reports: static ones from ``net0``, a DHCP lease
    from the bridge's subnet, and the link-local address derived from the MAC."""
    net0 = guest.config.get("net0")
    if net0 is None:
        return None, None
    net = parse_property_string(net0, {})
    ip = net.get("ip")
    ipv4: str | None
    if ip in (None, "manual"):
        ipv4 = None
    elif ip == "dhcp":
        bridge = node.bridges.get(net.get("bridge", ""))
        network = ipaddress.ip_interface(bridge.cidr).network if bridge and bridge.cidr else None
        base = network if network is not None else ipaddress.ip_network("10.0.0.0/24")
        hosts = list(base.hosts())
        ipv4 = f"{hosts[(guest.vmid % (len(hosts) - 20)) + 19]}/{base.prefixlen}"
    else:
        ipv4 = ip
    ip6 = net.get("ip6")
    if ip6 not in (None, "auto", "dhcp", "manual"):
        return ipv4, ip6
    return ipv4, _link_local(net.get("hwaddr", _mac_for(net0)))


def _volume_name(storage: SimStorage, vmid: int, index: int) -> str:
    """PVE's name for a new container volume (pve-storage plugins alloc_image, PVE::LXC alloc_disk)."""
    if storage.type in ("dir", "nfs", "cifs", "glusterfs"):
        return f"{vmid}/vm-{vmid}-disk-{index}.raw"
    if storage.type in ("zfspool", "btrfs"):
        return f"subvol-{vmid}-disk-{index}"
    return f"vm-{vmid}-disk-{index}"


def _volume_order(key: str) -> int:
    return -1 if key == "rootfs" else int(key[2:])


def _indexed(key: str, prefix: str) -> bool:
    return key.startswith(prefix) and key[len(prefix) :].isdigit()


def _print_property_string(values: Mapping[str, str], first: tuple[str, ...] = ()) -> str:
    keys = [k for k in first if k in values] + sorted(k for k in values if k not in first)
    return ",".join(f"{k}={values[k]}" for k in keys)


def _install_ssh_keys(rootfs: Path, keys: str) -> None:
    """What PVE does with ``ssh-public-keys`` at create: root's authorized_keys inside the container."""
    ssh_dir = rootfs / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = ssh_dir / "authorized_keys"
    target.write_text(keys.rstrip("\n") + "\n")
    target.chmod(0o600)
    if sandbox.confinement() == "subuid":
        for path in (ssh_dir, target):
            os.lchown(path, sandbox.CONTAINER_ROOT_ID, sandbox.CONTAINER_ROOT_ID)


def _features(value: str) -> dict[str, str]:
    return parse_property_string(value, {}) if value else {}


def _ostype_for(ostemplate: str) -> str:
    name = ostemplate.rsplit("/", 1)[-1].lower()
    for ostype in ("debian", "ubuntu", "alpine", "centos", "fedora", "archlinux", "devuan", "opensuse", "gentoo"):
        if name.startswith(ostype):
            return ostype
    return "unmanaged"


def _mac_for(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return _MAC_PREFIX + "".join(f":{b:02X}" for b in digest[:3])


def _link_local(mac: str) -> str:
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    groups = [f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return f"fe80::{':'.join(groups)}/64"
