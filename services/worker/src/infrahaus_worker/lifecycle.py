"""Lifecycle actions on an existing container: start, stop, shutdown, restart, delete.

Each is idempotent (a redelivered message finds the work done and succeeds) and retries Proxmox's lock failures
("CT is locked (…)", "can't lock file … - got timeout": in the call's answer or, for start/stop/shutdown/reboot,
in the task's exit status) with backoff for a bounded time.
"""

import time
from typing import Any

from infrahaus_domain.settings import WorkerTimings
from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxNotFound, ProxmoxTaskFailed
from infrahaus_worker.pipeline.env import run_task


async def _status(client: ProxmoxClient, node: str, vmid: int) -> str:
    return (await client.lxc.status(node, vmid)).status


async def start(client: ProxmoxClient, node: str, vmid: int, timings: WorkerTimings) -> dict[str, Any]:
    if await _status(client, node, vmid) == "running":
        return {"status": "running", "changed": False}
    await run_task(
        client, lambda: client.lxc.start(node, vmid), timeout=timings.start_stop, lock_wait=timings.lock_wait
    )
    return {"status": "running", "changed": True}


async def stop(client: ProxmoxClient, node: str, vmid: int, timings: WorkerTimings) -> dict[str, Any]:
    if await _status(client, node, vmid) == "stopped":
        return {"status": "stopped", "changed": False}
    await run_task(client, lambda: client.lxc.stop(node, vmid), timeout=timings.start_stop, lock_wait=timings.lock_wait)
    return {"status": "stopped", "changed": True}


async def shutdown(
    client: ProxmoxClient, node: str, vmid: int, timings: WorkerTimings, grace: int | None
) -> dict[str, Any]:
    """Graceful shutdown; Proxmox itself forces the stop after `grace` seconds (forceStop=1).

    The result says whether the stop had to be forced: the task ran into the timeout or its log says so.
    """
    grace = grace or timings.shutdown_timeout
    if await _status(client, node, vmid) == "stopped":
        return {"status": "stopped", "changed": False, "forced": False, "timeout": grace}
    started = time.monotonic()
    upid = await run_task(
        client,
        lambda: client.lxc.shutdown(node, vmid, timeout=grace, force_stop=True),
        timeout=grace + timings.start_stop,
        lock_wait=timings.lock_wait,
    )
    elapsed = time.monotonic() - started
    log = await client.tasks.log(node, upid, limit=50)
    forced = elapsed >= grace or any("forc" in line.lower() or "kill" in line.lower() for line in log)
    return {"status": "stopped", "changed": True, "forced": forced, "timeout": grace}


async def restart(client: ProxmoxClient, node: str, vmid: int, timings: WorkerTimings) -> dict[str, Any]:
    """Proxmox's reboot when running; a stopped container is simply started.

    Proxmox's reboot does not check the container's lock: it stops the container and its start then fails on the
    lock (pve-container LXC.pm vm_reboot, the pre-start hook) with only "startup for container … failed". A reboot
    that leaves the container stopped is therefore finished as a start, whose lock failures are recognised and
    retried."""
    if await _status(client, node, vmid) != "running":
        return await start(client, node, vmid, timings)
    try:
        await run_task(
            client, lambda: client.lxc.reboot(node, vmid), timeout=timings.start_stop * 2, lock_wait=timings.lock_wait
        )
    except ProxmoxTaskFailed:
        if await _status(client, node, vmid) == "running":
            raise
        return await start(client, node, vmid, timings)
    return {"status": "running", "changed": True}


async def destroy(client: ProxmoxClient, node: str, vmid: int, timings: WorkerTimings) -> dict[str, Any]:
    """Stop if needed, then destroy with purge and unreferenced disks; a container already gone is done. The caller
    checked that the guest is ours (`infrahaus_worker.ownership`)."""
    try:
        if await _status(client, node, vmid) != "stopped":
            await stop(client, node, vmid, timings)
        await run_task(
            client,
            lambda: client.lxc.delete(node, vmid, purge=True, destroy_unreferenced_disks=True),
            timeout=timings.start_stop,
            lock_wait=timings.lock_wait,
        )
    except ProxmoxNotFound:
        return {"destroyed": False, "reason": "gone", "detail": f"There is no guest {vmid} on node {node}."}
    return {"destroyed": True}
