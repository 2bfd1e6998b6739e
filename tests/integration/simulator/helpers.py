"""Small helpers for simulator tests: wait for a task by polling its status with a deadline."""

import asyncio
import time
from typing import Any

import httpx

DEBIAN = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


async def wait_task(
    client: httpx.AsyncClient,
    upid: str,
    *,
    timeout: float = 10.0,
    node: str = "pve",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll ``/tasks/{upid}/status`` until the task stopped; returns the final status."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/nodes/{node}/tasks/{upid}/status", headers=headers)
        response.raise_for_status()
        status: dict[str, Any] = response.json()["data"]
        if status["status"] == "stopped":
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"task {upid} still running after {timeout}s")
        await asyncio.sleep(0.01)


async def create_ct(client: httpx.AsyncClient, vmid: int, **extra: str) -> str:
    """POST a container create and return the UPID (the task is not awaited)."""
    params = {
        "vmid": str(vmid),
        "ostemplate": DEBIAN,
        "hostname": f"ct{vmid}",
        "rootfs": "local-lvm:8",
        "net0": "name=eth0,bridge=vmbr0,ip=dhcp",
        "unprivileged": "1",
    } | extra
    response = await client.post("/nodes/pve/lxc", data=params)
    assert response.status_code == 200, response.reason_phrase
    upid: str = response.json()["data"]
    return upid


async def create_ct_ok(client: httpx.AsyncClient, vmid: int, **extra: str) -> None:
    status = await wait_task(client, await create_ct(client, vmid, **extra))
    assert status["exitstatus"] == "OK"


async def start_ct(client: httpx.AsyncClient, vmid: int) -> None:
    """Start a container and wait for its task."""
    response = await client.post(f"/nodes/pve/lxc/{vmid}/status/start")
    assert response.status_code == 200, response.reason_phrase
    status = await wait_task(client, response.json()["data"])
    assert status["exitstatus"] == "OK", status["exitstatus"]


async def create_running(client: httpx.AsyncClient, vmid: int, **extra: str) -> None:
    """Create a container and start it (a create with start=1 forks its start as a task of its own)."""
    await create_ct_ok(client, vmid, **extra)
    await start_ct(client, vmid)
