"""Dependency audit for `make lint`: pip-audit over the locked third-party set, against PyPI's vulnerability data.

Exit 1 when a locked dependency has a known vulnerability. When the service cannot answer (no network, a mirror
without PyPI's per-release JSON API, a timeout), say so loudly and exit 0, so an outage never makes CI flaky;
set AUDIT_STRICT=1 to turn "could not audit" into a failure as well (CI runners with full network access).

Uses `-s pypi` (PyPI's JSON API, reachable wherever packages install from pypi.org) rather than OSV, and the set
from uv.lock (`uv export --frozen`), so what is audited is exactly what is deployed, dev tools included.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    strict = os.environ.get("AUDIT_STRICT") == "1"
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        report = Path(tmp) / "audit.json"
        subprocess.run(
            ["uv", "export", "--frozen", "--all-groups", "--no-emit-workspace", "--no-hashes",
             "--format", "requirements-txt", "--quiet", "-o", str(requirements)],
            check=True,
        )  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip",
             "-s", "pypi", "--progress-spinner", "off", "--timeout", "15", "-f", "json", "-o", str(report)],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if not report.exists():
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            sys.stderr.write(f"AUDIT NOT RUN: pip-audit could not reach its vulnerability service: {last}\n")
            return 1 if strict else 0
        dependencies = json.loads(report.read_text())["dependencies"]

    vulnerable = [d for d in dependencies if d.get("vulns")]
    unaudited = [d for d in dependencies if d.get("skip_reason")]
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        fixes = sorted({f for v in dep["vulns"] for f in v.get("fix_versions", [])})
        sys.stdout.write(f"VULNERABLE {dep['name']} {dep['version']}: {ids} (fixed in: {', '.join(fixes) or '-'})\n")
    audited = len(dependencies) - len(unaudited)
    sys.stdout.write(
        f"dependency audit: {audited} of {len(dependencies)} packages checked, {len(vulnerable)} vulnerable\n"
    )
    if unaudited:
        sys.stderr.write(
            f"AUDIT INCOMPLETE: {len(unaudited)} packages could not be checked "
            f"(e.g. {unaudited[0]['name']}: {unaudited[0]['skip_reason']})\n"
        )
    if vulnerable:
        return 1
    return 1 if strict and unaudited else 0


if __name__ == "__main__":
    sys.exit(main())
