"""Step `discover` (90-100): find services, ports and saved credentials; then the container is ready.

The discovery output carries credential values, so it is never streamed to the live log.
"""

from infrahaus_worker.discovery import DISCOVERY_SCRIPT, DiscoveryFinding, build_services, parse_discovery_output
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError

STEP = "discover"


async def run(env: PipelineEnv) -> list[DiscoveryFinding]:
    await env.reporter.step(STEP, 90, "Discovering services")
    if not env.creation.start_after_create and not env.creation.needs_provisioning:
        await env.reporter.progress(100, "Container is stopped; services are discovered after a start")
        return []
    services = await discover(env)
    await env.reporter.progress(100, f"Found {len(services)} service(s)")
    return services


async def discover(env: PipelineEnv) -> list[DiscoveryFinding]:
    """Run discovery in the container and hand the result to the reporter."""
    result = await env.runner.exec(env.vmid, ["bash", "-c", DISCOVERY_SCRIPT], timeout=60)
    if result.exit_code != 0:
        raise StepError.of("proxmox_error", f"Service discovery exited with code {result.exit_code}", step=STEP)
    services = build_services(parse_discovery_output("\n".join(result.stdout)), ip_address=env.ip_address)
    # The receiver records a `service_discovered` event per service (never a credential value).
    await env.reporter.services(services)
    return services
