"""`make bench`: run every benchmark of the project, then write the performance record.

Each benchmark script runs as a subprocess with a time bound (its output shown live and kept in
`bench-results/<name>.log`). Their figures are collected — from `bench-results/<name>.json` when the script writes
one, else from its printed summary — and written as one markdown table to `bench-results/RECORD.md`, each figure
next to its target (README.md, Performance) and whether it was met.
Run: `uv run python -m tests.bench [--only NAME ...]`.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path("bench-results")
RECORD = RESULTS / "RECORD.md"


@dataclass
class Figure:
    what: str
    value: str
    target: str
    met: bool | None  # None: informative, no target


@dataclass
class Run:
    name: str
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    output: str = ""
    figures: list[Figure] = field(default_factory=list)
    load_start: float = 0.0
    load_end: float = 0.0


def _search(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.MULTILINE)


def _from_json(data: dict[str, Any]) -> list[Figure]:
    return [Figure(f["what"], f["value"], f["target"], f.get("met")) for f in data.get("figures", [])]


def _vmid_check(run: Run, data: dict[str, Any] | None) -> list[Figure]:
    if data and "figures" in data:
        return _from_json(data)
    figures: list[Figure] = []
    server = _search(r"server-side\s+p50\s+([0-9.]+) ms\s+p99\s+([0-9.]+) ms", run.output)
    if server:
        p99 = float(server.group(2))
        figures.append(Figure("VMID check p99 server-side at 200 req/s (alone)", f"{p99:.2f} ms", "≤ 5 ms", p99 <= 5.0))
    counts = _search(r"(\d+) requests, (\d+) errors", run.output)
    if counts:
        errors = int(counts.group(2))
        figures.append(Figure("VMID check errors", f"{errors} of {counts.group(1)}", "0", errors == 0))
    return figures


def _list_containers(run: Run, data: dict[str, Any] | None) -> list[Figure]:
    if not data:
        return []
    if "figures" in data:
        return _from_json(data)
    latency = data["node_latency_ms"]
    ratio, target = data["list_p50_ratio"], data["list_target_ratio"]
    return [
        Figure(
            f"GET /api/containers, {data['nodes']} nodes x {data['containers_per_node']}, nodes answer after "
            f"{latency:g} ms: p50",
            f"{data['list_p50_ms']:.0f} ms = {ratio:.2f} x slowest node",
            f"≤ {target:g} x",
            ratio <= target,
        ),
    ]


def _concurrent_creations(run: Run, data: dict[str, Any] | None) -> list[Figure]:
    if data and "figures" in data:
        return _from_json(data)
    ratio = _search(r"^ratio:\s+([0-9.]+) x", run.output)
    one = _search(r"^one creation:\s+([0-9.]+) s", run.output)
    many = _search(r"^(\d+) concurrent creations:\s+([0-9.]+) s", run.output)
    if not (ratio and one and many):
        return []
    value = float(ratio.group(1))
    failed = "FAILED operations" in run.output
    figures = [
        Figure(
            f"{many.group(1)} concurrent creations: makespan / one creation",
            f"{many.group(2)} s / {one.group(1)} s = {value:.2f} x{' (some FAILED)' if failed else ''}",
            "≤ 1.5 x",
            value <= 1.5 and not failed,
        )
    ]
    for who in ("worker", "simulator"):
        cpu = _search(rf"^{who} CPU per creation:\s+([0-9.]+) s", run.output)
        if cpu:
            figures.append(
                Figure(f"{who} CPU-seconds per creation (of the concurrent ones)", f"{cpu.group(1)} s", "-", None)
            )
    return figures


def _generic(run: Run, data: dict[str, Any] | None) -> list[Figure]:
    return _from_json(data) if data else []


@dataclass
class Benchmark:
    name: str
    args: list[str]
    timeout: float
    collect: Callable[[Run, dict[str, Any] | None], list[Figure]]


BENCHMARKS = [
    Benchmark("throughput", ["--duration", "10"], 300, _generic),
    Benchmark("profile", ["--requests", "3000", "--profile"], 420, _generic),
    Benchmark("vmid_check", ["--duration", "20"], 180, _vmid_check),
    Benchmark("list_containers", [], 300, _list_containers),
    Benchmark("concurrent_creations", [], 420, _concurrent_creations),
    Benchmark("dev_startup", [], 240, _generic),
    Benchmark("load", ["--duration", "60"], 480, _generic),
]


def _run(bench: Benchmark) -> Run:
    run = Run(bench.name)
    json_path = RESULTS / f"{bench.name}.json"
    json_path.unlink(missing_ok=True)  # a stale file must not pass for this run's figures
    if importlib.util.find_spec(f"tests.bench.{bench.name}") is None:
        run.output = "not present in this tree"
        return run
    log_path = RESULTS / f"{bench.name}.log"
    sys.stdout.write(f"\n=== {bench.name} (at most {bench.timeout:g} s)\n")
    sys.stdout.flush()
    started = time.monotonic()
    run.load_start = os.getloadavg()[0]
    with log_path.open("w") as log, log_path.open() as tail:
        process = subprocess.Popen(
            [sys.executable, "-m", f"tests.bench.{bench.name}", *bench.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Show the benchmark's output live by following its log (a pipe would need a reader thread to time out).
        while process.poll() is None and time.monotonic() - started < bench.timeout:
            sys.stdout.write(tail.read())
            sys.stdout.flush()
            time.sleep(0.5)
        if process.poll() is None:
            run.timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
        run.returncode = process.wait()
        sys.stdout.write(tail.read())
    run.seconds = time.monotonic() - started
    run.load_end = os.getloadavg()[0]
    run.output = log_path.read_text(errors="replace")
    data: dict[str, Any] | None = None
    if json_path.exists():
        data = json.loads(json_path.read_text())
    run.figures = bench.collect(run, data)
    return run


def _status(run: Run) -> str:
    if run.output == "not present in this tree":
        return "not present"
    if run.timed_out:
        return f"timed out after {run.seconds:.0f} s"
    return f"exit {run.returncode}, {run.seconds:.0f} s"


def _record(runs: list[Run], load_before: float, load_after: float) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance record",
        "",
        f"Written by `make bench` on {now}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; 1-minute load average {load_before:.1f} before and "
        f"{load_after:.1f} after the run (other work on the machine competes for the same cores).",
        "Targets: README.md, Performance. Each benchmark's full output is in `bench-results/<name>.log`, its "
        "figures in `bench-results/<name>.json` where it writes one.",
        "",
        "| benchmark | what | measured | target | verdict | load 1m (start → end) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        load = f"{run.load_start:.1f} → {run.load_end:.1f}"
        if not run.figures:
            lines.append(f"| {run.name} | no figures ({_status(run)}) | - | - | - | {load} |")
        for fig in run.figures:
            verdict = "-" if fig.met is None else ("met" if fig.met else "**missed**")
            lines.append(f"| {run.name} | {fig.what} | {fig.value} | {fig.target} | {verdict} | {load} |")
    lines += ["", "| benchmark | run |", "|---|---|"]
    lines += [f"| {run.name} | {_status(run)} |" for run in runs]
    lines += _before_after()
    lines += _profiles()
    return "\n".join(lines) + "\n"


def _before_after() -> list[str]:
    """The authenticated read before the hot-path work (tests/bench/baseline.json) beside this run's figures."""
    baseline = json.loads((Path(__file__).parent / "baseline.json").read_text())
    lines = ["", "## The authenticated read, before and after", "", f"Before: {baseline['what']}.", ""]
    lines += ["| measure | before | after (this run) |", "|---|---|---|"]
    after_tp: dict[str, Any] = {}
    if (RESULTS / "throughput.json").exists():
        after_tp = json.loads((RESULTS / "throughput.json").read_text()).get("servers", {}).get("api", {})
    after_pr: dict[str, Any] = {}
    if (RESULTS / "profile.json").exists():
        routes = json.loads((RESULTS / "profile.json").read_text()).get("routes", [])
        after_pr = next((r for r in routes if r["route"] == "GET /api/nodes"), {})
    before_tp, before_pr = baseline["throughput"], baseline["profile"]

    def cell(data: dict[str, Any], key: str, unit: str) -> str:
        if not data:
            return "not measured"
        return f"{data[key]:.0f} {unit} (load {data['load_average_1m']:.1f})"

    lines.append(
        f"| wrk, `infrahaus api --workers 1`: req/s | {cell(before_tp, 'rps', 'req/s')} "
        f"| {cell(after_tp, 'rps', 'req/s')} |"
    )
    lines.append(
        f"| wrk: server CPU per request | {cell(before_tp, 'cpu_us_per_request', 'µs')} "
        f"| {cell(after_tp, 'cpu_us_per_request', 'µs')} |"
    )
    lines.append(
        f"| in-process ASGI call: CPU per request | {cell(before_pr, 'cpu_us_per_request', 'µs')} "
        f"| {cell(after_pr, 'cpu_us_per_request', 'µs')} |"
    )
    lines.append(f"| round trips per request | {baseline['round_trips']} | one SELECT (session/token kept in memory) |")
    return lines


def _profiles(top: int = 12) -> list[str]:
    """The head of each hot path's cProfile (own CPU time per function), as `tests.bench.profile` wrote it."""
    lines: list[str] = []
    for path in sorted(RESULTS.glob("profile-*.txt")):
        text = path.read_text().splitlines()
        try:
            start = next(i for i, line in enumerate(text) if line.strip().startswith("ncalls"))
        except StopIteration:
            continue
        lines += ["", f"### {text[0].lstrip('# ')}", "", "```", text[start]]
        lines += [line.replace(str(Path.cwd()) + "/", "") for line in text[start + 1 : start + 1 + top]]
        lines += ["```"]
    if lines:
        lines = ["", "## Profiles of the hot paths (top functions by own CPU time)", *lines]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="run only these")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    load_before = os.getloadavg()[0]
    runs = [_run(b) for b in BENCHMARKS if not args.only or b.name in args.only]
    record = _record(runs, load_before, os.getloadavg()[0])
    RECORD.write_text(record)
    sys.stdout.write(f"\n{record}\nwrote {RECORD}\n")
    verdicts = [fig.met for run in runs for fig in run.figures]
    return 0 if all(v is not False for v in verdicts) and all(not r.timed_out for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
