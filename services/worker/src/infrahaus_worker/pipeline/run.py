"""The creation pipeline: the steps of SPEC §8 in order, bounded by the whole-creation time limit."""

import asyncio
from typing import Any

from infrahaus_worker.pipeline import create, discover, files, packages, prepare, scripts, start
from infrahaus_worker.pipeline.env import PipelineEnv, retry_locked

STEPS = (create.run, start.run, prepare.run, files.run, packages.run, scripts.run)


async def run_creation(env: PipelineEnv) -> dict[str, Any]:
    """Run every step; returns the operation's result. Raises on failure (classified by the caller)."""
    async with asyncio.timeout(env.limits.creation):
        for step in STEPS:
            await step(env)
        services = await discover.run(env)
        if not env.plan.start_after_create and env.plan.needs_provisioning:
            # Started only to provision it: leave it the way the request asked for.
            upid = await retry_locked(lambda: env.client.lxc.stop(env.node, env.vmid), wait=env.limits.lock_wait)
            await env.client.tasks.wait(upid, timeout=env.limits.start_stop)
    return {
        "vmid": env.vmid,
        "ip_address": env.ip_address,
        "services": [s.name for s in services if not s.is_system],
    }
