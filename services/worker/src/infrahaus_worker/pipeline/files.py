"""Step `files` (40-55): write the template's files, honouring each file's policy.

`replace` overwrites, `default` writes only when nothing is there yet, `backup` first copies the
existing file to ``<name>.backup-<UTC timestamp>``. Every path is allow-listed and passed as an argv
element; content goes through `pct push`, never through a shell.
"""

from datetime import UTC, datetime

from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError
from infrahaus_worker.pipeline.plan import FilePlan, PlanError, check_dir, check_name

STEP = "files"
START, END = 40, 55
# A constant script; the paths arrive as positional arguments, never inside the script text.
_PROBE = 'mkdir -p -- "$1" || exit 2; [ -e "$2" ]'


async def run(env: PipelineEnv) -> None:
    await env.reporter.step(STEP, START, f"Writing {len(env.plan.files)} file(s)")
    total = len(env.plan.files)
    for index, file in enumerate(env.plan.files, start=1):
        outcome = await write_file(env, file)
        await env.reporter.line(f"{file.path}: {outcome}", stream="stdout", source="files")
        await env.reporter.progress(START + (END - START) * index // max(total, 1), f"{file.path}: {outcome}")
    await env.reporter.progress(END, "Files written")


async def write_file(env: PipelineEnv, file: FilePlan) -> str:
    """Write one file; returns what happened (``written``, ``kept existing``, ``backed up to ...``)."""
    try:
        directory = check_dir(file.target_path)
        check_name(file.name, "file name")
    except PlanError as exc:
        raise StepError.of("validation_failed", str(exc), step=STEP) from None
    path = f"{directory.rstrip('/')}/{file.name}"
    # One round trip: create the directory, then say whether the file is there (0 yes, 1 no, 2 mkdir failed).
    probe = await env.runner.exec(env.vmid, ["sh", "-c", _PROBE, "infrahaus-files", directory, path], timeout=60)
    if probe.exit_code not in (0, 1):
        detail = (probe.stderr or probe.stdout or [""])[-1]
        raise StepError.of("file_failed", f"Cannot create {directory}: {detail}", step=STEP)
    exists = probe.exit_code == 0
    outcome = "written"
    if exists and file.policy == "default":
        return "kept existing (policy default)"
    if exists and file.policy == "backup":
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = f"{path}.backup-{stamp}"
        await _exec(env, ["cp", "-p", "--", path, backup])
        outcome = f"written, previous kept as {backup}"
    await env.runner.push(env.vmid, file.content.encode(), path, mode=file.mode)
    return outcome


async def _exec(env: PipelineEnv, argv: list[str]) -> None:
    result = await env.runner.exec(env.vmid, argv, timeout=60)
    if result.exit_code != 0:
        detail = (result.stderr or result.stdout or [""])[-1]
        raise StepError.of("file_failed", f"{argv[0]} failed with exit code {result.exit_code}: {detail}", step=STEP)
