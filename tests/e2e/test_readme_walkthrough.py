"""The README's curl walk-through, taken from the README itself and run verbatim against `infrahaus dev --demo`."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.dev import DevServer

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough_blocks() -> list[str]:
    text = README.read_text()
    section = re.search(r"<!-- walkthrough:start -->(.*?)<!-- walkthrough:end -->", text, re.DOTALL)
    assert section, "README has no walk-through section"
    blocks = re.findall(r"```bash\n(.*?)```", section.group(1), re.DOTALL)
    assert len(blocks) >= 6
    return blocks


def test_readme_walkthrough_runs_verbatim(dev_server: DevServer, tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + "\n".join(walkthrough_blocks())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")},
        "IH": dev_server.base_url,
        "PVE_PORT": str(dev_server.sim_api_port),
        "SSH_PORT": str(dev_server.sim_ssh_port),
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"walk-through failed:\n{output}\n--- server log ---\n{dev_server.log()[-4000:]}"
    # What each step promises is visible in its output.
    assert '"lifecycle": "ready"' in output
    assert '"type":"done"' in output
    assert '"name": "web"' in output
    assert '"admin_password"' in output
    assert output.count('"status": "succeeded"') >= 2
    # Day two: revisions, drift, a sync, a sync rolled back, snapshots by hand.
    assert '"created_from": 1' in output
    assert '"name": "/etc/notes/notes.conf"' in output
    assert '"name": "apt:jq"' in output
    assert '"state": "missing"' in output
    assert '"in_sync": true' in output
    assert '"rolled_back": true' in output
    assert "rolled_back: Rolled back (snapshot ih-sync-" in output
    assert '"name": "before-edit"' in output
    assert output.count('"kind": "sync"') == 2
    assert output.count('"status": "succeeded"') >= 8
