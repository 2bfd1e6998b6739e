"""Benchmark: how long `infrahaus dev --demo` takes to be ready (target < 5 s on this machine).

Each run spawns `infrahaus dev --demo` on free ports with a fresh data directory (so migrations, the encryption key,
the template sync and the simulator all start from nothing) and measures the time from the spawn to the first
`200` of `/health/ready`. Prints every run, the min and the median against the target, and writes
`bench-results/dev_startup.json`. Not a test: `uv run python -m tests.bench.dev_startup [--runs 3]`.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.fixtures.dev import free_port

TARGET_S = 5.0
RESULT = Path("bench-results") / "dev_startup.json"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far (from /proc): the part of the startup that load does not add."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(timeout: float) -> tuple[float, float]:
    """Seconds from spawning `infrahaus dev --demo` to its first ready answer, and the CPU seconds it used."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    with tempfile.TemporaryDirectory(prefix="infrahaus-bench-dev-") as tmp:
        log_path = Path(tmp) / "dev.log"
        with log_path.open("wb") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "infrahaus.cli", "dev", "--demo",
                    "--port", str(port),
                    "--data-dir", str(Path(tmp) / "data"),
                    "--sim-api-port", str(free_port()),
                    "--sim-ssh-port", str(free_port()),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            with httpx.Client(timeout=1) as http:
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"infrahaus dev exited: {log_path.read_text()[-2000:]}")
                    try:
                        if http.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                            return time.perf_counter() - started, cpu_seconds(process.pid)
                    except httpx.TransportError:
                        pass
                    if time.perf_counter() - started > timeout:
                        raise RuntimeError(f"not ready within {timeout:g} s: {log_path.read_text()[-2000:]}")
                    time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on one run after this many seconds")
    args = parser.parse_args()

    times, cpu = [], []
    for index in range(args.runs):
        seconds, used = one_run(args.timeout)
        times.append(seconds)
        cpu.append(used)
        print(f"run {index + 1}: ready in {seconds:.2f} s ({used:.2f} s of CPU)")  # noqa: T201
    best, median = min(times), statistics.median(times)
    load = os.getloadavg()[0]
    met = median < TARGET_S
    print(  # noqa: T201
        f"infrahaus dev --demo ready: min {best:.2f} s, median {median:.2f} s (target < {TARGET_S:g} s: "
        f"{'met' if met else 'NOT met'}; load average {load:.2f} on {os.cpu_count()} CPUs); "
        f"CPU time to ready: median {statistics.median(cpu):.2f} s"
    )
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(
        json.dumps(
            {
                "name": "dev_startup",
                "runs_s": [round(t, 3) for t in times],
                "min_s": round(best, 3),
                "cpu_runs_s": [round(c, 3) for c in cpu],
                "cpu_median_s": round(statistics.median(cpu), 3),
                "median_s": round(median, 3),
                "target_s": TARGET_S,
                "load_average_1m": round(load, 2),
                "cpus": os.cpu_count(),
                "meets_target": met,
                "figures": [
                    {
                        "what": "`infrahaus dev --demo` spawn to /health/ready 200 (median of runs)",
                        "value": f"{median:.2f} s (min {best:.2f} s, {len(times)} runs)",
                        "target": f"< {TARGET_S:g} s",
                        "met": met,
                    },
                    {
                        "what": "CPU time of `infrahaus dev --demo` until ready (median; independent of load)",
                        "value": f"{statistics.median(cpu):.2f} s",
                        "target": "-",
                        "met": None,
                    },
                ],
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
