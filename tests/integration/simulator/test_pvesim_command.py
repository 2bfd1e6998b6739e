"""`infrahaus pvesim` runs the simulator standalone and prints what a client needs."""

import asyncio
import hashlib
import re
import signal
import ssl
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.dev import free_port


async def _served_fingerprint(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return hashlib.sha256(der).hexdigest().upper()


async def test_pvesim_prints_credentials_and_serves(tmp_path: Path) -> None:
    port, ssh_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infrahaus.cli",
        "pvesim",
        "--port",
        str(port),
        "--ssh-port",
        str(ssh_port),
        "--data-dir",
        str(tmp_path / "data"),
        "--task-duration",
        "0.05",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("ostemplate:") for line in lines):
            assert time.monotonic() < deadline, lines
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            assert line, f"pvesim exited early: {(await proc.stderr.read()).decode() if proc.stderr else ''}"
            lines.append(line.decode().rstrip())
        banner = "\n".join(lines)
        assert f"https://127.0.0.1:{port}/api2/json" in banner
        assert f"127.0.0.1:{ssh_port} user root password demo" in banner
        assert "root@pam / demo" in banner
        assert "root@pam!infrahaus secret demo-token-secret" in banner
        assert "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst" in banner
        assert re.search(r"SSH host key:\s+ssh-ed25519 \S+", banner)
        printed = re.search(r"TLS fingerprint:\s+([0-9A-F:]{95})", banner)
        assert printed is not None
        assert printed[1].replace(":", "") == await _served_fingerprint(port)
        headers = {"Authorization": "PVEAPIToken=root@pam!infrahaus=demo-token-secret"}
        async with httpx.AsyncClient(verify=False, headers=headers) as client:  # noqa: S501 - fingerprint checked above
            version = await client.get(f"https://127.0.0.1:{port}/api2/json/version")
        assert version.json()["data"]["release"] == "8.2"
        # The fingerprint survives a restart on the same data directory (it is persisted).
        assert (tmp_path / "data" / "pve" / "pve-ssl.pem").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    assert code == 0
