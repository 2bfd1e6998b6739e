"""The simulated system tools inside a container tree, run directly in the sandbox."""

import re
from pathlib import Path

import pytest

from infrahaus_pvesim import sandbox
from tests.fixtures.pct import run_in


def sh(rootfs: Path, script: str, *, stdin: str = "") -> str:
    result = run_in(rootfs, ["bash", "-c", script], stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def unit(rootfs: Path, name: str, body: str) -> None:
    sh(rootfs, f"cat > /etc/systemd/system/{name}", stdin=body)


def sockets(rootfs: Path) -> list[tuple[str, str, int]]:
    """(local address, process name, pid) per line of `ss -tlnpH`."""
    out = []
    for line in sh(rootfs, "ss -tlnpH").splitlines():
        match = re.fullmatch(r"LISTEN\s+0\s+4096\s+(\S+)\s+\S+\s+users:\(\(\"([^\"]+)\",pid=(\d+),fd=\d+\)\)", line)
        assert match, line
        out.append((match[1], match[2], int(match[3])))
    return out


@pytest.mark.parametrize(
    ("exec_start", "expected"),
    [
        ("/opt/app/bin/app -p 3000", {"0.0.0.0:3000", "[::]:3000"}),
        ("/opt/app/bin/app --port 3001", {"0.0.0.0:3001", "[::]:3001"}),
        ("/opt/app/bin/app --port=3002 --debug", {"0.0.0.0:3002", "[::]:3002"}),
        ("/opt/app/bin/app -l 3003", {"0.0.0.0:3003", "[::]:3003"}),
        ("/opt/app/bin/app --listen 127.0.0.1:3004", {"127.0.0.1:3004"}),
        ("/opt/app/bin/app --listen=[::]:3005 --listen 0.0.0.0:3006", {"[::]:3005", "0.0.0.0:3006"}),
        ("/opt/app/bin/app --verbose", set()),
    ],
)
def test_ports_derived_from_exec_start(rootfs: Path, exec_start: str, expected: set[str]) -> None:
    unit(rootfs, "app.service", f"[Unit]\nDescription=App\n[Service]\nExecStart={exec_start}\n")
    sh(rootfs, "systemctl start app")
    assert {local for local, comm, _ in sockets(rootfs) if comm == "app"} == expected


def test_ss_header_and_filters(rootfs: Path) -> None:
    lines = sh(rootfs, "ss -tlnp").splitlines()
    assert lines[0].split() == ["State", "Recv-Q", "Send-Q", "Local", "Address:Port", "Peer", "Address:Port", "Process"]
    assert all(line.startswith("LISTEN") for line in lines[1:])
    only6 = sh(rootfs, "ss -6 -tlnH").splitlines()
    assert only6
    assert all("[" in line.split()[3] for line in only6)
    assert "users:" not in sh(rootfs, "ss -tlnH")


def test_enable_disable_and_aliases(rootfs: Path) -> None:
    unit(
        rootfs,
        "api.service",
        "[Service]\nExecStart=/srv/api --port 7000\n[Install]\nWantedBy=multi-user.target\nAlias=web-api.service\n",
    )
    assert sh(rootfs, "systemctl is-enabled api || true") == "disabled\n"
    sh(rootfs, "systemctl enable api")
    assert sh(rootfs, "systemctl is-enabled web-api; systemctl is-active api || true") == "enabled\ninactive\n"
    sh(rootfs, "systemctl start web-api")
    assert sh(rootfs, "systemctl is-active api") == "active\n"
    sh(rootfs, "systemctl disable --now api")
    assert sh(rootfs, "systemctl is-enabled api || true; systemctl is-active api || true") == "disabled\ninactive\n"


def test_system_units_are_running_at_boot(rootfs: Path) -> None:
    running = sh(rootfs, "systemctl list-units --type=service --state=running --no-legend --plain --no-pager")
    assert [line.split()[0] for line in running.splitlines()] == [
        "cron.service",
        "postfix.service",
        "ssh.service",
        "systemd-journald.service",
    ]
    assert sh(rootfs, "systemctl show -p MainPID -p ActiveState sshd") == "MainPID=210\nActiveState=active\n"
    assert ("0.0.0.0:22", "sshd", 210) in sockets(rootfs)


def test_apt_installs_a_package_that_starts_its_service(rootfs: Path) -> None:
    out = sh(rootfs, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx redis-server")
    assert out == ""
    assert (
        sh(rootfs, "systemctl is-active nginx redis-server; systemctl is-enabled redis") == "active\nactive\nenabled\n"
    )
    local = {address for address, _, _ in sockets(rootfs)}
    assert {"0.0.0.0:80", "[::]:80", "127.0.0.1:6379", "[::1]:6379"} <= local
    assert sh(rootfs, "test -f /var/www/html/index.nginx-debian.html && echo page") == "page\n"


def test_apt_without_yes_asks_and_aborts_at_eof(rootfs: Path) -> None:
    result = run_in(rootfs, ["apt-get", "install", "htop"])
    assert result.returncode == 1
    assert result.stdout.endswith("Do you want to continue? [Y/n] Abort.\n")
    assert run_in(rootfs, ["apt-get", "install", "htop"], stdin="y\n").returncode == 0


def test_apt_update_offline_and_apt_warning(rootfs: Path) -> None:
    sh(rootfs, "touch /etc/sim/offline")
    result = run_in(rootfs, ["apt", "update"])
    assert result.returncode == 100
    assert "WARNING: apt does not have a stable CLI interface. Use with caution in scripts." in result.stderr
    assert "Temporary failure resolving 'deb.debian.org'" in result.stderr
    sh(rootfs, "rm /etc/sim/offline")
    assert run_in(rootfs, ["apt-get", "update"]).returncode == 0


def test_missing_packages_listed_in_etc_sim(rootfs: Path) -> None:
    sh(rootfs, "echo libfoo > /etc/sim/missing")
    result = run_in(rootfs, ["apt-get", "install", "-y", "curl", "libfoo"])
    assert (result.returncode, result.stderr) == (100, "E: Unable to locate package libfoo\n")
    assert "Package: libfoo" not in (rootfs / "var/lib/dpkg/status").read_text()


def test_pip_and_npm_failures(rootfs: Path) -> None:
    pip = run_in(rootfs, ["pip3", "install", "--break-system-packages", "nonexistent-lib"])
    assert pip.returncode == 1
    assert "ERROR: No matching distribution found for nonexistent-lib" in pip.stderr
    npm = run_in(rootfs, ["npm", "install", "-g", "nonexistent-cli"])
    assert npm.returncode == 1
    assert "npm ERR! code E404" in npm.stderr
    ok = run_in(rootfs, ["env", "PIP_BREAK_SYSTEM_PACKAGES=1", "python3", "-m", "pip", "install", "flask"])
    assert ok.returncode == 0


def test_ip_and_hostname(rootfs: Path) -> None:
    assert sh(rootfs, "hostname; hostname -I") == "box\n198.51.100.7 2001:db8::7 \n"
    assert sh(rootfs, "ip -4 addr show eth0") == (
        "2: eth0@if12: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000"
        " link-netnsid 0\n    inet 198.51.100.7/24 brd 198.51.100.255 scope global eth0\n"
        "       valid_lft forever preferred_lft forever\n"
    )
    assert sh(rootfs, "ip route").startswith("default via 198.51.100.1 dev eth0")


def test_dev_null_and_tmp(rootfs: Path) -> None:
    assert sh(rootfs, "echo gone > /dev/null; head -c 8 /dev/urandom | wc -c; stat -c %a /tmp") == "8\n1777\n"


def test_systemctl_show_separates_units_with_a_blank_line(rootfs: Path) -> None:
    assert sh(rootfs, "systemctl show -p Id -p MainPID ssh.service cron.service") == (
        "Id=ssh.service\nMainPID=210\n\nId=cron.service\nMainPID=180\n"
    )


def test_global_scope_addresses_leave_out_link_local(rootfs: Path) -> None:
    sandbox.set_network(rootfs, "10.9.8.7/16", "fe80::be24:11ff:fe00:1/64")
    out = sh(rootfs, "ip -o addr show scope global; hostname -I")
    assert out == (
        "2: eth0    inet 10.9.8.7/16 brd 10.9.255.255 scope global eth0\\"
        "       valid_lft forever preferred_lft forever\n"
        "10.9.8.7 \n"
    )
    assert "inet6 fe80::be24:11ff:fe00:1/64 scope link" in sh(rootfs, "ip -o addr show")


def test_runuser_and_sudo_switch_users_and_keep_argv(rootfs: Path) -> None:
    sh(rootfs, "useradd -m app")
    out = sh(
        rootfs,
        "runuser -u app -- sh -c 'echo $(id -un) $0 \"$1\"' 'a b' '$(id) -c'; "
        "sudo -u app whoami; cd /; runuser -l app -c pwd",
    )
    assert out == "app a b $(id) -c\napp\n/home/app\n"
    refused = run_in(rootfs, ["runuser", "-u", "ghost", "--", "true"])
    assert refused.returncode == 1


def test_process_substitution(rootfs: Path) -> None:
    out = sh(
        rootfs, "while read -r l; do echo got $l; done < <(printf 'a\\nb\\n'); diff <(echo x) <(echo x) && echo same"
    )
    assert out == "got a\ngot b\nsame\n"
