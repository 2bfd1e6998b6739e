"""The pinned Node toolchain of the real-client tests: `node`, and the tools `npm ci` put under node_modules.

A missing Node or a missing/stale `npm ci` is a test failure with the command that fixes it, never a skip: CI
installs both (`scripts/bootstrap.sh` in CI mode), and a developer is told what to run.
"""

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parent
NODE_MODULES = CLIENTS / "node_modules"
INSTALL = "npm ci --prefix tests/clients"


MINIMUM_NODE = 20  # playwright-core's engines field (package.json repeats it)


def node() -> str:
    """The `node` executable on PATH (fails the test when there is none, or when it is too old)."""
    found = shutil.which("node")
    if found is None:
        pytest.fail(
            "Node.js is not installed: the real-client tests need node and npm "
            "(`apt-get install nodejs npm`, or `INFRAHAUS_BOOTSTRAP_SERVICES_CLIENTS=1 bash scripts/bootstrap.sh` "
            f"as root), then `{INSTALL}`."
        )
    version = _version(found)
    if int(re.sub(r"^v(\d+).*", r"\1", version)) < MINIMUM_NODE:
        pytest.fail(f"{found} is Node.js {version}; the real-client tests need {MINIMUM_NODE} or newer.")
    return found


@functools.cache
def _version(executable: str) -> str:
    return subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def installed() -> Path:
    """`node_modules`, checked against the versions pinned in package.json (fails the test when stale)."""
    node()
    pinned: dict[str, str] = json.loads((CLIENTS / "package.json").read_text())["devDependencies"]
    for name, version in pinned.items():
        manifest = NODE_MODULES / name / "package.json"
        if not manifest.exists():
            pytest.fail(f"{name} is not installed under tests/clients/node_modules: run `{INSTALL}`.")
        found = json.loads(manifest.read_text())["version"]
        if found != version:
            pytest.fail(f"tests/clients/node_modules has {name} {found}, package.json pins {version}: run `{INSTALL}`.")
    return NODE_MODULES


def run_node(args: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """`node <args>` in `cwd`, output captured; the caller asserts on the return code."""
    return subprocess.run(
        [node(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )  # fmt: skip
