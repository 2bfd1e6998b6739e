"""Step `prepare` (35-40): wait until `pct exec` works, then resolve the container's IP address.

The address comes from the static configuration, else from Proxmox's /interfaces, else from inside.
"""

import asyncio
import ipaddress
import re
import time

from infrahaus_proxmox import LxcInterface
from infrahaus_proxmox.errors import ProxmoxNotFound, ProxmoxServerError
from infrahaus_proxmox.pct import PctNotRunning, PctTimeout
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError

STEP = "prepare"
_INET = re.compile(r"\binet6?\s+([0-9a-fA-F.:]+)/\d+")


async def run(env: PipelineEnv) -> None:
    await env.reporter.step(STEP, 35, "Waiting for the container to accept commands")
    if not env.creation.start_after_create and not env.creation.needs_provisioning:
        return
    await wait_ready(env)
    await env.reporter.progress(38, "Container accepts commands")
    env.ip_address = await resolve_ip(env)
    await env.reporter.set_ip(env.ip_address)
    await env.reporter.progress(40, f"IP address {env.ip_address}" if env.ip_address else "No IP address yet")


async def wait_ready(env: PipelineEnv) -> None:
    """Poll a trivial `pct exec` until it succeeds (init may still be starting)."""
    deadline = time.monotonic() + env.timings.ready_wait
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


async def resolve_ip(env: PipelineEnv, *, wait: float | None = None) -> str | None:
    """Static config first, then Proxmox's /lxc/{vmid}/interfaces, then inside the container.

    Proxmox answers null while there is no container process and lists eth0 without an IPv4 address until DHCP
    gave it one (pve-container LXC.pm get_interfaces): both mean "not yet", asked again for up to `wait` seconds
    (`dhcp_wait` by default). An IPv4 address wins; a global IPv6 one is used when no IPv4 came in time."""
    network = env.spec.network if env.spec is not None else None
    if network is not None and network.mode == "static" and (static := _address(network.ip_cidr)):
        return static
    deadline = time.monotonic() + (env.timings.dhcp_wait if wait is None else wait)
    delay = 0.2
    ipv6: str | None = None
    while True:
        try:
            interfaces = await env.client.lxc.interfaces(env.node, env.vmid) or []
        except (ProxmoxNotFound, ProxmoxServerError):
            break  # older nodes lack the endpoint; ask the container itself
        ipv4, found6 = _global_addresses(interfaces)
        if ipv4 is not None:
            return ipv4
        ipv6 = found6 or ipv6
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 2.0)
    if ipv6 is not None:
        return ipv6
    result = await env.runner.exec(env.vmid, ["ip", "-o", "addr", "show", "scope", "global"], timeout=10)
    for line in result.stdout:
        match = _INET.search(line)
        if match and (found := _address(match.group(1))):
            return found
    return None


def _global_addresses(interfaces: list[LxcInterface]) -> tuple[str | None, str | None]:
    """The first global IPv4 and IPv6 address of the container's interfaces (``lo`` and link-local skipped)."""
    ipv4: str | None = None
    ipv6: str | None = None
    for interface in interfaces:
        if interface.name == "lo":
            continue
        listed = [a.ip_address for a in interface.addresses] or [v for v in (interface.inet, interface.inet6) if v]
        for value in listed:
            address = _address(value)
            if address is None:
                continue
            if ":" in address:
                ipv6 = ipv6 or address
            else:
                ipv4 = ipv4 or address
    return ipv4, ipv6
