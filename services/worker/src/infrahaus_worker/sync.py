"""A sync: bring an existing container to a revision of its template with the creation pipeline's own steps.

Order and progress (like a creation's): `sync` 0-15 (ownership, running, the safety point), `config` 15-40, `files`
40-55, `packages` 55-65, `scripts` 65-90, then 90-100 releasing the safety point. Only the requested steps run.
Files follow their policies (`files` step), packages are installed by manager (`packages` step), and only scripts
that are new or changed since the container's applied spec — or named in the request — run, after the same helper
library (`scripts` step). When a step fails after a safety point was taken, the container is restored
(`infrahaus_worker.safety`) and the operation fails with `result.rolled_back`.

The spec the container ends up with (`applied_spec`) takes from the target only what this sync applied: a script
not run keeps its old content there (drift still shows it changed), and so do files, packages or config values whose
step did not run.
"""

import functools
from dataclasses import dataclass
from typing import Any

import msgspec

from infrahaus_domain.containers.errors import OperationCancelledError
from infrahaus_domain.containers.schemas import ContainerSpec
from infrahaus_domain.containers.spec_builder import SYNCED_FIELDS
from infrahaus_worker import safety
from infrahaus_worker.pipeline import config, files, packages, scripts
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError
from infrahaus_worker.pipeline.run import inside_container

STEP = "sync"


@dataclass(frozen=True, kw_only=True)
class SyncPlan:
    revision: int
    target: ContainerSpec
    applied: ContainerSpec
    steps: list[str]
    # Scripts to run again although unchanged.
    rerun: list[str]
    snapshot: bool
    keep_snapshot: bool


def scripts_to_run(plan: SyncPlan) -> list[str]:
    """New or changed scripts, and the ones asked for, in the target's order."""
    if "scripts" not in plan.steps:
        return []
    before = {s.name: s.content for s in plan.applied.scripts}
    return [s.name for s in plan.target.scripts if s.name in plan.rerun or before.get(s.name) != s.content]


def applied_after(plan: SyncPlan, ran_scripts: list[str]) -> ContainerSpec:
    """The container's spec once the sync succeeded (see the module docstring)."""
    target, before = plan.target, plan.applied
    values: dict[str, Any] = {}
    if "config" not in plan.steps:
        values.update({name: getattr(before, name) for name in SYNCED_FIELDS})
    if "files" not in plan.steps:
        values["files"] = before.files
    if "packages" not in plan.steps:
        values["packages"] = before.packages
    old = {s.name: s for s in before.scripts}
    kept = []
    for script in target.scripts:
        if script.name in ran_scripts or (
            old.get(script.name) is not None and old[script.name].content == script.content
        ):
            kept.append(script)
        elif script.name in old:
            kept.append(old[script.name])
    values["scripts"] = kept
    return msgspec.structs.replace(target, **values)


async def run_sync(env: PipelineEnv, plan: SyncPlan) -> dict[str, Any]:
    """Run the sync; returns the operation's result (`applied_spec` among it). Raises `safety.RolledBack` when a
    step failed after a safety point, anything else as it came."""
    await env.reporter.step(STEP, 0, f"Syncing with revision {plan.revision}: {', '.join(plan.steps)}")
    await env.require_owned(STEP)
    status = (await env.client.lxc.status(env.node, env.vmid)).status
    if status != "running":
        raise StepError.of("not_running", f"The container is {status}; a sync needs it running.", step=STEP)
    run_scripts = scripts_to_run(plan)
    point: safety.SafetyPoint | None = None
    if plan.snapshot:
        point = await safety.take(env, what="sync", files=plan.target.files, step=STEP)
        await env.reporter.progress(15, f"Safety point taken ({point.method})")
    changed: list[str] = []
    try:
        if "config" in plan.steps:
            await env.require_owned(config.STEP)
            env.spec = plan.target
            changed = await config.run(env)
        if "files" in plan.steps:
            await env.require_owned(files.STEP)
            env.spec = plan.target
            await inside_container(env, functools.partial(files.run, env))
        if "packages" in plan.steps:
            await env.require_owned(packages.STEP)
            env.spec = plan.target
            await inside_container(env, functools.partial(packages.run, env))
        if "scripts" in plan.steps:
            await env.require_owned(scripts.STEP)
            env.spec = msgspec.structs.replace(
                plan.target, scripts=[s for s in plan.target.scripts if s.name in run_scripts]
            )
            await inside_container(env, functools.partial(scripts.run, env))
    except OperationCancelledError:
        raise
    except Exception as exc:
        if point is None:
            raise
        raise await safety.restore(env, point, exc, keep=plan.keep_snapshot, step=STEP) from exc
    await env.reporter.step(STEP, 90, "Steps done")
    snapshot = (
        await safety.release(env, point, keep=plan.keep_snapshot, step=STEP)
        if point is not None
        else {"method": "none"}
    )
    await env.reporter.progress(100, f"Synced with revision {plan.revision}")
    return {
        "revision": plan.revision,
        "steps": plan.steps,
        "config_changed": changed,
        "scripts_run": run_scripts,
        "snapshot": snapshot,
        "rolled_back": False,
        "status": "running",
    }
