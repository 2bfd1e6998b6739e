"""Step `start` (20-35): start the container and wait for the task."""

from infrahaus_worker.pipeline.env import PipelineEnv, run_task

STEP = "start"


async def run(env: PipelineEnv) -> None:
    await env.reporter.step(STEP, 20, "Starting container")
    if not env.creation.start_after_create and not env.creation.needs_provisioning:
        await env.reporter.progress(35, "Left stopped (start_after_create is false)")
        return
    await start_container(env)
    await env.reporter.progress(35, "Container running")


async def start_container(env: PipelineEnv) -> None:
    """Start unless already running (a resumed operation may find it so)."""
    status = await env.client.lxc.status(env.node, env.vmid)
    if status.status == "running":
        return
    await run_task(
        env.client,
        lambda: env.client.lxc.start(env.node, env.vmid),
        timeout=env.timings.start_stop,
        lock_wait=env.timings.lock_wait,
    )
