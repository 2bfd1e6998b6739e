"""Step `packages` (55-65): install packages by manager, non-interactively.

Only the chosen managers' packages and the extra apt packages are in the spec. Each manager runs
once with all its packages; a failing manager does not stop the others, and the step then fails
naming every failed manager (the first one's output decides the code: apt_locked, network_unreachable...).
"""

from collections.abc import Sequence

from infrahaus_domain.allowlist import UnsafeValueError, install_argument
from infrahaus_domain.containers.schemas import SpecPackage
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import StepError, classify_text, tail

STEP = "packages"
# The output lines of a manager kept for classifying a failure (the live log has the rest).
LAST_OUTPUT_LINES = 200
START, END = 55, 65
MANAGERS = ("apt", "pip", "npm")


class UnknownPackageManagerError(ValueError):
    """A manager the worker has no install command for."""


def commands(manager: str, specs: Sequence[str]) -> list[list[str]]:
    """The argv lists that install `specs` with one manager (each list one `pct exec`).

    Specs passed the allow-list (they start with a letter or digit), so none can pose as an option;
    no `--` separator, which apt-get does not understand.
    """
    if manager == "apt":
        env = ["env", "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=a"]
        return [
            [*env, "apt-get", "update", "-q"],
            [*env, "apt-get", "install", "-y", "-q", "--no-install-recommends", *specs],
        ]
    if manager == "pip":
        # Debian 12's system Python refuses pip installs unless told; older pips ignore the variable.
        return [["env", "PIP_BREAK_SYSTEM_PACKAGES=1", "python3", "-m", "pip", "install", "--no-input", *specs]]
    if manager == "npm":
        return [["npm", "install", "--global", "--no-audit", "--no-fund", *specs]]
    raise UnknownPackageManagerError(f"unknown package manager {manager!r}")


def install_arguments(packages: list[SpecPackage]) -> list[str]:
    """The install arguments of one manager's packages, each checked against the shared allow-list again."""
    try:
        return [install_argument(p.manager, p.name, p.version) for p in packages]
    except UnsafeValueError as exc:
        raise StepError.of("validation_failed", str(exc), step=STEP) from None


async def run(env: PipelineEnv) -> None:
    grouped: dict[str, list[SpecPackage]] = {}
    for package in env.creation.packages:
        if package.manager in MANAGERS:
            grouped.setdefault(package.manager, []).append(package)
    await env.reporter.step(STEP, START, f"Installing {sum(len(p) for p in grouped.values())} package(s)")
    failures: list[tuple[str, int, list[str]]] = []
    for index, manager in enumerate(m for m in MANAGERS if m in grouped):
        specs = install_arguments(grouped[manager])
        exit_code, lines = await _install(env, manager, specs)
        ok = exit_code == 0
        await env.reporter.event(
            "step",
            f"{manager}: {'installed' if ok else 'failed'} {', '.join(specs)}",
            {"step": STEP, "manager": manager, "packages": specs, "ok": ok, **({} if ok else {"exit_code": exit_code})},
        )
        if not ok:
            failures.append((manager, exit_code, lines))
        await env.reporter.progress(START + (END - START) * (index + 1) // len(grouped), f"{manager} done")
    if failures:
        manager, exit_code, lines = failures[0]
        names = ", ".join(f"{m} (exit code {code})" for m, code, _ in failures)
        raise StepError.of(
            classify_text(lines, "package_failed"),
            f"Package installation failed for {names}",
            step=STEP,
            manager=manager,
            exit_code=exit_code,
            last_lines=tail(lines),
        )
    await env.reporter.progress(END, "Packages installed")


async def _install(env: PipelineEnv, manager: str, specs: list[str]) -> tuple[int, list[str]]:
    output: list[str] = []
    source = f"packages:{manager}"
    sink = env.line_sink(source)
    try:
        for argv in commands(manager, specs):
            result = await env.runner.exec(env.vmid, argv, timeout=env.timings.packages, on_line=sink)
            output = [*output, *(line.text for line in result.lines)][-LAST_OUTPUT_LINES:]
            if result.exit_code != 0:
                return result.exit_code, output
    finally:
        await sink.finish()
    return 0, output
