"""The simulated tools inside a container, driven through the pct runner as the worker drives them."""

import re

from infrahaus_proxmox.pct import PctExecRunner

UNIT = """[Unit]
Description=Demo web app

[Service]
ExecStart=/usr/local/bin/webapp --port 8080 --workers 2
Restart=always

[Install]
WantedBy=multi-user.target
"""
SS_LINE = re.compile(
    r"^LISTEN\s+\d+\s+\d+\s+(?P<local>\S+)\s+(?P<peer>\S+)\s+users:\(\(\"(?P<comm>[^\"]+)\",pid=(?P<pid>\d+),fd=\d+\)\)$"
)


async def sh(runner: PctExecRunner, script: str) -> list[str]:
    result = await runner.exec(100, ["bash", "-c", script], timeout=20)
    assert result.exit_code == 0, result.lines
    return result.stdout


async def listening(runner: PctExecRunner) -> dict[str, tuple[str, int]]:
    sockets = {}
    for line in (await runner.exec(100, ["ss", "-tlnpH"], timeout=10)).stdout:
        match = SS_LINE.match(line)
        assert match, line
        sockets[match["local"]] = (match["comm"], int(match["pid"]))
    return sockets


async def test_started_unit_listens_on_ipv4_and_ipv6_with_main_and_child_pids(pct_runner: PctExecRunner) -> None:
    await pct_runner.push(100, UNIT.encode(), "/etc/systemd/system/webapp.service", mode=0o644)
    await sh(pct_runner, "systemctl daemon-reload && systemctl enable --now webapp.service")

    main_pid = int((await sh(pct_runner, "systemctl show -p MainPID --value webapp"))[0])
    assert (await sh(pct_runner, "systemctl is-active webapp; systemctl is-enabled webapp")) == ["active", "enabled"]
    sockets = await listening(pct_runner)
    assert sockets["0.0.0.0:8080"] == ("webapp", main_pid)
    # The IPv6 socket belongs to a forked child; its parent and cgroup lead back to the unit.
    comm, child = sockets["[::]:8080"]
    assert comm == "webapp"
    assert child != main_pid
    assert sockets["0.0.0.0:22"] == ("sshd", 210)
    assert sockets["[::]:22"] == ("sshd", 210)
    child_info = await sh(pct_runner, f"grep PPid /proc/{child}/status; cat /proc/{child}/cgroup")
    assert child_info == [f"PPid:\t{main_pid}", "0::/system.slice/webapp.service"]

    units = await sh(pct_runner, "systemctl list-units --type=service --state=running --no-legend --plain --no-pager")
    assert {line.split()[0] for line in units} >= {"webapp.service", "ssh.service", "cron.service"}

    await sh(pct_runner, "systemctl stop webapp")
    assert "0.0.0.0:8080" not in await listening(pct_runner)
    stopped = await pct_runner.exec(100, ["systemctl", "is-active", "webapp"], timeout=10)
    assert (stopped.exit_code, stopped.stdout) == (3, ["inactive"])


async def test_explicit_listen_keys_and_ipv6(pct_runner: PctExecRunner) -> None:
    unit = (
        "[Unit]\nDescription=Cache\n[Service]\nExecStart=/usr/bin/cache\nX-Listen=127.0.0.1:6379\nX-Listen=[::1]:6379\n"
    )
    await pct_runner.push(100, unit.encode(), "/etc/systemd/system/cache.service")
    await sh(pct_runner, "systemctl start cache")
    sockets = await listening(pct_runner)
    assert sockets["127.0.0.1:6379"][0] == "cache"
    assert sockets["[::1]:6379"][0] == "cache"


async def test_port_taken_by_another_unit_fails_like_bind(pct_runner: PctExecRunner) -> None:
    unit = "[Service]\nExecStart=/usr/bin/rogue -p 22\n"
    await pct_runner.push(100, unit.encode(), "/etc/systemd/system/rogue.service")
    result = await pct_runner.exec(100, ["systemctl", "start", "rogue"], timeout=10)
    assert result.exit_code == 1
    assert result.stderr[0] == "Job for rogue.service failed because the control process exited with error code."
    journal = await sh(pct_runner, "journalctl -u rogue --no-pager -o cat")
    assert "bind() to 0.0.0.0:22 failed (98: Address already in use)" in journal


async def test_journalctl_prints_a_units_lines(pct_runner: PctExecRunner) -> None:
    await pct_runner.push(100, UNIT.encode(), "/etc/systemd/system/webapp.service")
    await sh(pct_runner, "systemctl start webapp && systemctl restart webapp")
    lines = await sh(pct_runner, "journalctl -u webapp -n 2 --no-pager -o cat")
    assert lines == ["Starting webapp.service - Demo web app...", "Started webapp.service - Demo web app."]
    full = await sh(pct_runner, "journalctl -u webapp.service -n 1 --no-pager")
    assert re.fullmatch(
        r"\w{3} \d{2} \d{2}:\d{2}:\d{2} web1 systemd\[1\]: Started webapp.service - Demo web app\.", full[0]
    )
    assert (await sh(pct_runner, "journalctl -u nothing --no-pager")) == ["-- No entries --"]


async def test_unknown_unit(pct_runner: PctExecRunner) -> None:
    result = await pct_runner.exec(100, ["systemctl", "start", "ghost"], timeout=10)
    assert (result.exit_code, result.stderr) == (5, ["Failed to start ghost.service: Unit ghost.service not found."])


async def test_apt_get_install_records_packages(pct_runner: PctExecRunner) -> None:
    result = await pct_runner.exec(
        100, ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "htop", "jq"], timeout=30
    )
    assert result.exit_code == 0
    assert "Setting up jq (1.0-sim) ..." in result.stdout
    status = await pct_runner.exec(100, ["dpkg-query", "-W", "-f", "${Status}\\n", "htop", "jq"], timeout=10)
    assert status.stdout == ["install ok installed", "install ok installed"]


async def test_apt_get_unknown_package_fails_like_apt(pct_runner: PctExecRunner) -> None:
    result = await pct_runner.exec(100, ["apt-get", "install", "-y", "nonexistent-thing"], timeout=30)
    assert result.exit_code == 100
    assert result.stderr == ["E: Unable to locate package nonexistent-thing"]
    missing = await pct_runner.exec(100, ["dpkg-query", "-W", "nonexistent-thing"], timeout=10)
    assert missing.exit_code == 1


async def test_apt_get_waits_on_a_held_lock(pct_runner: PctExecRunner) -> None:
    await pct_runner.push(100, b"4242 (unattended-upgr)\n", "/var/lib/dpkg/lock-frontend")
    result = await pct_runner.exec(100, ["apt-get", "install", "-y", "curl"], timeout=30)
    assert result.exit_code == 100
    assert result.stderr[0] == (
        "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)"
    )


async def test_debconf_prompt_without_noninteractive_fails(pct_runner: PctExecRunner) -> None:
    result = await pct_runner.exec(100, ["apt-get", "install", "-y", "tzdata"], timeout=30)
    assert result.exit_code == 100
    assert "dpkg: error processing package tzdata (--configure):" in result.stderr
    ok = await pct_runner.exec(
        100, ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "tzdata"], timeout=30
    )
    assert ok.exit_code == 0


async def test_pip_and_npm(pct_runner: PctExecRunner) -> None:
    refused = await pct_runner.exec(100, ["pip3", "install", "requests"], timeout=30)
    assert refused.exit_code == 1
    assert refused.stderr[0] == "error: externally-managed-environment"
    await sh(pct_runner, "pip3 install --break-system-packages requests==2.31 && npm install -g pm2")
    assert await sh(pct_runner, "pip3 freeze; npm ls -g") == [
        "requests==1.0.0",
        "/usr/local/lib/node_modules",
        "+-- pm2@1.0.0",
    ]


async def test_users_and_addresses(pct_runner: PctExecRunner) -> None:
    await sh(pct_runner, "useradd -m -s /bin/bash -G sudo app")
    assert await sh(pct_runner, "id app; getent passwd app; stat -c '%U %a' /home/app") == [
        "uid=1000(app) gid=1000(app) groups=1000(app),27(sudo)",
        "app:x:1000:1000::/home/app:/bin/bash",
        "app 750",
    ]
    again = await pct_runner.exec(100, ["useradd", "app"], timeout=10)
    assert (again.exit_code, again.stderr) == (9, ["useradd: user 'app' already exists"])
    assert await sh(pct_runner, "hostname -I; ip -4 -o addr show eth0 | awk '{print $4}'") == [
        "192.0.2.100 2001:db8::100 ",
        "192.0.2.100/24",
    ]
