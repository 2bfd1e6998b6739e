"""The API process loads asyncssh (about 30 MB of its memory target, SPEC §11) only once it opens an SSH
connection: the app, the domain and every error class it names import without it."""

import subprocess
import sys


def test_importing_the_api_app_does_not_load_asyncssh() -> None:
    probe = (
        "import sys, infrahaus_api.app, infrahaus_domain.services, infrahaus_domain.proxmox_errors; "
        "print('asyncssh' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_the_runner_still_loads_it_when_asked_for() -> None:
    probe = "import sys; from infrahaus_proxmox.pct import PctExecRunner, SshError; print('asyncssh' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "True"
