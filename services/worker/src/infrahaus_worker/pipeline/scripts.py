"""Step `scripts` (65-90): run the chosen scripts in the chosen order, each after the helper library.

Both files are written into a per-operation directory (mode 700) inside the container (streamed over
the `pct exec` stdin: one round trip per file instead of a host temp file and `pct push`) and run as
``bash -c 'source "$1"; source "$2"'`` with the paths as separate argv elements. Every output line is
streamed to the live log; a non-zero exit fails the step with the exit code and the last lines.
The directory is removed afterwards, also on failure.
"""

import time

from infrahaus_domain.allowlist import UnsafeValueError, validate_script_name
from infrahaus_domain.containers.schemas import SpecScript
from infrahaus_proxmox.pct import PctTimeout
from infrahaus_worker.helpers import helpers_script
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError, tail

STEP = "scripts"
START, END = 65, 90
RUNNER = 'source "$1" && source "$2"'
_FRESH_DIR = 'rm -rf -- "$1" && mkdir -m 700 -p -- "$1"'
_WRITE = 'umask 077 && cat > "$1"'


def check_script_name(name: str) -> None:
    """The shared allow-list again before a name becomes a path in the container; `StepError` otherwise."""
    try:
        validate_script_name(name)
    except UnsafeValueError as exc:
        raise StepError.of("validation_failed", str(exc), step=STEP) from None


async def run(env: PipelineEnv) -> None:
    scripts = env.creation.scripts
    await env.reporter.step(STEP, START, f"Running {len(scripts)} script(s)")
    if not scripts:
        await env.reporter.progress(END, "No scripts to run")
        return
    for script in scripts:
        check_script_name(script.name)
    workdir = env.workdir
    helpers = f"{workdir}/infrahaus-helpers.sh"
    # A fresh private directory (a resumed operation may find a half-filled one); the path is an argument.
    made = await env.runner.exec(env.vmid, ["sh", "-c", _FRESH_DIR, "infrahaus-scripts", workdir], timeout=30)
    if made.exit_code != 0:
        raise StepError.of("file_failed", f"Cannot create {workdir} in the container", step=STEP)
    # Scripts an earlier attempt of this operation completed are not run again (a resumed operation); the one that
    # was running when that attempt's worker died runs again from its start.
    completed: list[str] = list((await env.reporter.checkpoint()).get("scripts_done", []))
    try:
        await _write(env, helpers, helpers_script())
        for index, script in enumerate(scripts):
            percent = START + (END - START) * (index + 1) // len(scripts)
            if script.name in completed:
                await env.reporter.progress(percent, f"{script.name} completed by an earlier attempt")
                continue
            await run_script(env, script, helpers)
            completed.append(script.name)
            await env.reporter.save_checkpoint(scripts_done=completed)
            await env.reporter.progress(percent, f"{script.name} done")
    finally:
        await env.runner.exec(env.vmid, ["rm", "-rf", "--", workdir], timeout=30)
    await env.reporter.progress(END, "Scripts finished")


async def run_script(env: PipelineEnv, script: SpecScript, helpers: str) -> None:
    path = f"{env.workdir}/{script.name}"
    await _write(env, path, script.content.encode())
    await env.reporter.line(f"==> {script.name}", stream="stdout", source=f"script:{script.name}")
    started = time.monotonic()
    argv = ["env", "HOME=/root", "DEBIAN_FRONTEND=noninteractive", "bash", "-c", RUNNER, script.name, helpers, path]
    output = env.line_sink(f"script:{script.name}")
    try:
        result = await env.runner.exec(env.vmid, argv, timeout=env.timings.script, on_line=output)
    except PctTimeout:
        raise StepError.of(
            "timeout", f"Script {script.name} ran longer than {env.timings.script:g}s", step=STEP, script=script.name
        ) from None
    finally:
        await output.finish()
    duration = round(time.monotonic() - started, 2)
    if result.exit_code != 0:
        last = tail([line.text for line in result.lines])
        raise StepError.of(
            "script_failed",
            f"Script {script.name} exited with code {result.exit_code}",
            step=STEP,
            script=script.name,
            exit_code=result.exit_code,
            last_lines=last,
        )
    await env.reporter.event(
        "script_completed",
        f"Script {script.name} completed",
        {"script": script.name, "exit_code": 0, "duration_s": duration},
    )


async def _write(env: PipelineEnv, path: str, content: bytes) -> None:
    """Write a file readable by root only; the path is an argument, the content arrives on stdin."""
    result = await env.runner.exec(env.vmid, ["sh", "-c", _WRITE, "infrahaus-write", path], timeout=60, stdin=content)
    if result.exit_code != 0:
        raise StepError.of("file_failed", f"Cannot write {path} in the container", step=STEP)
