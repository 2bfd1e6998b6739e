"""Step `discover` (90-100): find services, ports and saved credentials; then the container is ready.

The discovery output carries credential values, so it is never streamed to the live log.
"""

from infrahaus_worker.discovery import DISCOVERY_SCRIPT, DiscoveredService, build_services, parse_discovery_output
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError

STEP = "discover"


async def run(env: PipelineEnv) -> list[DiscoveredService]:
    await env.reporter.step(STEP, 90, "Discovering services")
    if not env.plan.start_after_create and not env.plan.needs_provisioning:
        await env.reporter.progress(100, "Container is stopped; services are discovered after a start")
        return []
    services = await discover(env)
    await env.reporter.progress(100, f"Found {len(services)} service(s)")
    return services


async def discover(env: PipelineEnv) -> list[DiscoveredService]:
    """Run discovery in the container, store the result, and record an event per application service."""
    result = await env.runner.exec(env.vmid, ["bash", "-c", DISCOVERY_SCRIPT], timeout=60)
    if result.exit_code != 0:
        raise StepError.of("proxmox_error", f"Service discovery exited with code {result.exit_code}", step=STEP)
    services = build_services(parse_discovery_output("\n".join(result.stdout)), ip_address=env.ip_address)
    await env.reporter.services(services)
    for service in services:
        if not service.is_system:
            await env.reporter.event(
                "service_discovered",
                f"Service {service.name} discovered" + (f" on port {service.port}" if service.port else ""),
                {
                    "service": service.name,
                    "type": service.type,
                    "port": service.port,
                    "has_credentials": bool(service.credentials),
                },
            )
    return services
