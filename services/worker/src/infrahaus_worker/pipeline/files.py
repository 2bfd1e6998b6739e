"""Step `files` (40-55): write the template's files, honouring each file's policy.

`replace` overwrites, `default` writes only when nothing is there yet, `backup` first copies the
existing file to ``<name>.backup-<UTC timestamp>``. Every path is allow-listed and passed as an argv
element; content goes through `pct push`, never through a shell.

`pct push` exits 0 even when the write inside the container failed, and says nothing at all when the copy itself
came up short (pve-container ``src/PVE/CLI/pct.pm``: the push worker's errors only go to stderr, ``File::Copy``'s
result is ignored). So every file written is checked from inside the container afterwards — size, sha256, mode
and owner, all files in one `pct exec` — and the step fails on any difference.
"""

import hashlib
import posixpath
from datetime import UTC, datetime

from infrahaus_domain.allowlist import UnsafeValueError, validate_file_name, validate_target_path
from infrahaus_domain.containers.schemas import SpecFile
from infrahaus_proxmox.pct import ExpectedFile
from infrahaus_worker.pipeline.env import PipelineEnv, retry_locked
from infrahaus_worker.pipeline.failures import StepError

STEP = "files"
START, END = 40, 55
# A constant script; the paths arrive as positional arguments, never inside the script text.
_PROBE = 'mkdir -p -- "$1" || exit 2; [ -e "$2" ]'


async def run(env: PipelineEnv) -> None:
    await env.reporter.step(STEP, START, f"Writing {len(env.creation.files)} file(s)")
    total = len(env.creation.files)
    written: list[ExpectedFile] = []
    for index, file in enumerate(env.creation.files, start=1):
        outcome, expected = await write_file(env, file)
        if expected is not None:
            written.append(expected)
        path = posixpath.join(file.target_path, file.name)
        await env.reporter.line(f"{path}: {outcome}", stream="stdout", source="files")
        await env.reporter.progress(START + (END - START) * index // max(total, 1), f"{path}: {outcome}")
    await verify(env, written)
    await env.reporter.progress(END, "Files written")


async def verify(env: PipelineEnv, written: list[ExpectedFile]) -> None:
    """Check every file written from inside the container; `file_failed` naming each one that differs."""
    mismatches = await env.runner.verify_files(env.vmid, written)
    if mismatches:
        listed = "; ".join(f"{m.path}: {m.problem}" for m in mismatches)
        raise StepError.of(
            "file_failed", f"Files differ inside the container after pct push reported success: {listed}", step=STEP
        )


def checked_path(file: SpecFile) -> tuple[str, str]:
    """The file's directory and full path, checked against the shared allow-list again (a stored value is never
    trusted blindly); `StepError` `validation_failed` otherwise."""
    try:
        directory = validate_target_path(file.target_path)
        validate_file_name(file.name)
    except UnsafeValueError as exc:
        raise StepError.of("validation_failed", str(exc), step=STEP) from None
    return directory, f"{directory.rstrip('/')}/{file.name}"


async def write_file(env: PipelineEnv, file: SpecFile) -> tuple[str, ExpectedFile | None]:
    """Write one file; returns what happened (``written``, ``kept existing``, ``backed up to ...``) and, when it
    was written, what it must look like inside the container."""
    directory, path = checked_path(file)
    # One round trip: create the directory, then say whether the file is there (0 yes, 1 no, 2 mkdir failed).
    probe = await env.runner.exec(env.vmid, ["sh", "-c", _PROBE, "infrahaus-files", directory, path], timeout=60)
    if probe.exit_code not in (0, 1):
        detail = (probe.stderr or probe.stdout or [""])[-1]
        raise StepError.of("file_failed", f"Cannot create {directory}: {detail}", step=STEP)
    exists = probe.exit_code == 0
    outcome = "written"
    if exists and file.policy == "default":
        return "kept existing (policy default)", None
    if exists and file.policy == "backup":
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = f"{path}.backup-{stamp}"
        await _exec(env, ["cp", "-p", "--", path, backup])
        outcome = f"written, previous kept as {backup}"
    content = file.content.encode()
    mode = int(file.mode, 8)
    await retry_locked(lambda: env.runner.push(env.vmid, content, path, mode=mode), wait=env.timings.lock_wait)
    # pct push creates the file as the container's root.
    expected = ExpectedFile(path=path, sha256=hashlib.sha256(content).hexdigest(), size=len(content), mode=mode)
    return outcome, expected


async def _exec(env: PipelineEnv, argv: list[str]) -> None:
    result = await env.runner.exec(env.vmid, argv, timeout=60)
    if result.exit_code != 0:
        detail = (result.stderr or result.stdout or [""])[-1]
        raise StepError.of("file_failed", f"{argv[0]} failed with exit code {result.exit_code}: {detail}", step=STEP)
