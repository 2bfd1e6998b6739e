"""Step `prepare` (35-40): wait until `pct exec` works, then resolve the container's IP address.

The address comes from the static configuration, else from Proxmox's /interfaces, else from inside.
"""

import asyncio
import ipaddress
import re
import time

from infrahaus_proxmox.errors import ProxmoxNotFound, ProxmoxServerError
from infrahaus_proxmox.pct import PctNotRunning, PctTimeout
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError

STEP = "prepare"
_INET = re.compile(r"\binet6?\s+([0-9a-fA-F.:]+)/\d+")


async def run(env: PipelineEnv) -> None:
    await env.reporter.step(STEP, 35, "Waiting for the container to accept commands")
    if not env.plan.start_after_create and not env.plan.needs_provisioning:
        return
    await wait_ready(env)
    await env.reporter.progress(38, "Container accepts commands")
    env.ip_address = await resolve_ip(env)
    await env.reporter.set_ip(env.ip_address)
    await env.reporter.progress(40, f"IP address {env.ip_address}" if env.ip_address else "No IP address yet")


async def wait_ready(env: PipelineEnv) -> None:
    """Poll a trivial `pct exec` until it succeeds (init may still be starting)."""
    deadline = time.monotonic() + env.limits.ready_wait
    delay = 0.1
    last = ""
    while True:
        try:
            result = await env.runner.exec(env.vmid, ["true"], timeout=10)
            if result.exit_code == 0:
                return
            last = f"exit code {result.exit_code}" + (f": {result.stderr[-1]}" if result.stderr else "")
        except (PctNotRunning, PctTimeout) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise StepError.of("timeout", f"Container {env.vmid} did not accept commands in time ({last})", step=STEP)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def _address(value: str | None) -> str | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.split("/", 1)[0])
    except ValueError:
        return None
    return None if address.is_loopback or address.is_link_local else str(address)


async def resolve_ip(env: PipelineEnv, *, attempts: int = 10) -> str | None:
    """Static config first, then /lxc/{vmid}/interfaces (DHCP may take a moment), then inside."""
    if env.plan.network.mode == "static" and (static := _address(env.plan.network.ip_cidr)):
        return static
    delay = 0.1
    for _ in range(attempts):
        try:
            for interface in await env.client.lxc.interfaces(env.node, env.vmid):
                if interface.name != "lo" and (found := _address(interface.inet) or _address(interface.inet6)):
                    return found
        except (ProxmoxNotFound, ProxmoxServerError):
            break  # older nodes lack the endpoint; ask the container itself
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    result = await env.runner.exec(env.vmid, ["ip", "-o", "addr", "show", "scope", "global"], timeout=10)
    for line in result.stdout:
        match = _INET.search(line)
        if match and (found := _address(match.group(1))):
            return found
    return None
