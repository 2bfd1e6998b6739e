"""The creation pipeline: create, start, prepare, files, packages, scripts, discover (ARCHITECTURE.md), in order,
bounded by the whole-creation time limit. Before every step after `create`, the guest must still carry this
container's ownership marker (`PipelineEnv.require_owned`)."""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from infrahaus_domain.containers.errors import OperationCancelledError
from infrahaus_proxmox.errors import ProxmoxError
from infrahaus_proxmox.pct import PctNotRunning, PctTimeout, SshConnectionLost
from infrahaus_worker import safety
from infrahaus_worker.pipeline import create, discover, files, packages, prepare, scripts, start
from infrahaus_worker.pipeline.env import PipelineEnv, run_task
from infrahaus_worker.pipeline.failures import StepError

T = TypeVar("T")

# Steps that run commands inside the container, which must keep running while they do.
INSIDE = (prepare.run, files.run, packages.run, scripts.run)
STEPS = (create.run, start.run, *INSIDE)
# Failures a container that stopped under a step shows as (the command was killed, the session ended, ...).
_STOP_SYMPTOMS = frozenset({"script_failed", "file_failed", "package_failed", "timeout", "network_unreachable"})
# Steps a resumed creation does not repeat once an earlier attempt completed them (the operation's resume markers
# list them; scripts also remember each script that completed). create, start and prepare always run: they check
# what exists first and set up what the later steps need (the container's address).
_NAMES = {
    create.run: create.STEP,
    start.run: start.STEP,
    prepare.run: prepare.STEP,
    files.run: files.STEP,
    packages.run: packages.STEP,
    scripts.run: scripts.STEP,
}
SKIPPED_WHEN_DONE = {files.run: (files.STEP, files.START), packages.run: (packages.STEP, packages.START)}


async def run_creation(env: PipelineEnv) -> dict[str, Any]:
    """Run every step; returns the operation's result. Raises on failure (classified by the caller); with
    `snapshot_before_scripts`, a failure from the scripts on raises `safety.RolledBack` once the container was
    restored to its state before them."""
    points: list[safety.SafetyPoint] = []
    try:
        async with asyncio.timeout(env.timings.creation):
            services = await _steps(env, points)
    except OperationCancelledError:
        raise
    except Exception as exc:
        if not points:
            raise
        raise await safety.restore(env, points[0], exc, keep=env.keep_snapshots, step=scripts.STEP) from exc
    started = env.creation.start_after_create
    result: dict[str, Any] = {
        "vmid": env.vmid,
        # The status the creation leaves the guest in: reads show it until the node's next answer.
        "status": "running" if started else "stopped",
        "ip_address": env.ip_address,
        "services": [s.name for s in services if not s.is_system],
    }
    if points:
        result["snapshot"] = await safety.release(env, points[0], keep=env.keep_snapshots, step=scripts.STEP)
    return result


async def _steps(env: PipelineEnv, points: list[safety.SafetyPoint]) -> list[Any]:
    """The steps in order; a safety point taken on the way is appended to `points`."""
    done: list[str] = list((await env.reporter.checkpoint()).get("steps_done", []))
    for step in STEPS:
        skippable = SKIPPED_WHEN_DONE.get(step)
        if skippable is not None and skippable[0] in done:
            await env.reporter.step(skippable[0], skippable[1], f"{skippable[0]}: completed by an earlier attempt")
            continue
        if step is not create.run:
            # The create step checks its guest itself once the create call is done.
            await env.require_owned(_NAMES[step])
        if step is scripts.run and env.creation.snapshot_before_scripts and env.creation.scripts:
            # A safety point before the first script: a failure from here on restores it.
            points.append(await safety.take(env, what="create", files=env.creation.files, step=scripts.STEP))
        if step in INSIDE:
            await inside_container(env, functools.partial(step, env))
        else:
            await step(env)
        if skippable is not None:
            done.append(skippable[0])
            await env.reporter.save_checkpoint(steps_done=done)
    await env.require_owned(discover.STEP)
    services = await inside_container(env, functools.partial(discover.run, env))
    if not env.creation.start_after_create and env.creation.needs_provisioning:
        # Started only to provision it: leave it the way the request asked for.
        await env.require_owned(discover.STEP)
        await run_task(
            env.client,
            lambda: env.client.lxc.stop(env.node, env.vmid),
            timeout=env.timings.start_stop,
            lock_wait=env.timings.lock_wait,
        )
    return list(services)


async def inside_container(env: PipelineEnv, work: Callable[[], Awaitable[T]]) -> T:
    """Run work that uses the container; if it fails because the container is not running (pct refused, or the
    container stopped under a command: killed, cut off, timed out), fail `not_running` instead."""
    try:
        return await work()
    except PctNotRunning as exc:
        raise StepError.of("not_running", f"Container {env.vmid} is not running: {exc}", step=_step(env)) from exc
    except (StepError, PctTimeout, SshConnectionLost) as exc:
        if isinstance(exc, StepError) and exc.info.code not in _STOP_SYMPTOMS:
            raise
        if await _running(env):
            raise
        raise StepError.of(
            "not_running", f"Container {env.vmid} stopped while the step ran ({exc})", step=_step(env)
        ) from exc


def _step(env: PipelineEnv) -> str | None:
    current = getattr(env.reporter, "current_step", None)
    return current if isinstance(current, str) else None


async def _running(env: PipelineEnv) -> bool:
    """Whether Proxmox says the container runs; an unanswered question counts as running (keep the first error)."""
    try:
        return (await env.client.lxc.status(env.node, env.vmid)).status == "running"
    except ProxmoxError:
        return True
