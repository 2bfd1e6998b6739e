"""Lifecycle actions on an existing container: start, stop, shutdown, restart, delete.

Each is idempotent (a redelivered message finds the work done and succeeds) and retries Proxmox's
"CT is locked" answers with backoff for a bounded time.
"""

import time
from typing import Any

from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxNotFound
from infrahaus_worker.pipeline.env import retry_locked
from infrahaus_worker.pipeline.plan import Limits


async def _status(client: ProxmoxClient, node: str, vmid: int) -> str:
    return (await client.lxc.status(node, vmid)).status


async def start(client: ProxmoxClient, node: str, vmid: int, limits: Limits) -> dict[str, Any]:
    if await _status(client, node, vmid) == "running":
        return {"status": "running", "changed": False}
    upid = await retry_locked(lambda: client.lxc.start(node, vmid), wait=limits.lock_wait)
    await client.tasks.wait(upid, timeout=limits.start_stop)
    return {"status": "running", "changed": True}


async def stop(client: ProxmoxClient, node: str, vmid: int, limits: Limits) -> dict[str, Any]:
    if await _status(client, node, vmid) == "stopped":
        return {"status": "stopped", "changed": False}
    upid = await retry_locked(lambda: client.lxc.stop(node, vmid), wait=limits.lock_wait)
    await client.tasks.wait(upid, timeout=limits.start_stop)
    return {"status": "stopped", "changed": True}


async def shutdown(client: ProxmoxClient, node: str, vmid: int, limits: Limits, grace: int | None) -> dict[str, Any]:
    """Graceful shutdown; Proxmox itself forces the stop after `grace` seconds (forceStop=1).

    The result says whether the stop had to be forced: the task ran into the timeout or its log says so.
    """
    grace = grace or limits.shutdown_timeout
    if await _status(client, node, vmid) == "stopped":
        return {"status": "stopped", "changed": False, "forced": False, "timeout": grace}
    started = time.monotonic()
    upid = await retry_locked(
        lambda: client.lxc.shutdown(node, vmid, timeout=grace, force_stop=True), wait=limits.lock_wait
    )
    await client.tasks.wait(upid, timeout=grace + limits.start_stop)
    elapsed = time.monotonic() - started
    log = await client.tasks.log(node, upid, limit=50)
    forced = elapsed >= grace or any("forc" in line.lower() or "kill" in line.lower() for line in log)
    return {"status": "stopped", "changed": True, "forced": forced, "timeout": grace}


async def restart(client: ProxmoxClient, node: str, vmid: int, limits: Limits) -> dict[str, Any]:
    """Proxmox's reboot when running; a stopped container is simply started."""
    if await _status(client, node, vmid) != "running":
        return await start(client, node, vmid, limits)
    upid = await retry_locked(lambda: client.lxc.reboot(node, vmid), wait=limits.lock_wait)
    await client.tasks.wait(upid, timeout=limits.start_stop * 2)
    return {"status": "running", "changed": True}


async def destroy(client: ProxmoxClient, node: str, vmid: int, limits: Limits) -> dict[str, Any]:
    """Stop if needed, then destroy with purge and unreferenced disks; a container already gone is done."""
    try:
        if await _status(client, node, vmid) != "stopped":
            await stop(client, node, vmid, limits)
        upid = await retry_locked(
            lambda: client.lxc.delete(node, vmid, purge=True, destroy_unreferenced_disks=True), wait=limits.lock_wait
        )
        await client.tasks.wait(upid, timeout=limits.start_stop)
    except ProxmoxNotFound:
        return {"destroyed": False, "already_gone": True}
    return {"destroyed": True, "already_gone": False}
