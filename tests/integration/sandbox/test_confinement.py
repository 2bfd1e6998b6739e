"""Commands in a simulated container stay inside its tree."""

import os
from pathlib import Path

import pytest

from infrahaus_pvesim import sandbox
from tests.fixtures.pct import run_in


def test_writes_land_inside_the_tree(rootfs: Path) -> None:
    result = run_in(rootfs, ["bash", "-c", "echo a > /etc/x && cd / && echo b > ../../y && echo c > /../../../z"])
    assert result.returncode == 0, result.stderr
    assert (rootfs / "etc" / "x").read_text() == "a\n"
    assert (rootfs / "y").read_text() == "b\n"
    assert (rootfs / "z").read_text() == "c\n"
    assert not Path("/etc/x").exists() or (rootfs / "etc" / "x").stat().st_ino != Path("/etc/x").stat().st_ino


def test_host_filesystem_is_not_visible(rootfs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "host-only-marker"
    marker.write_text("host")
    result = run_in(rootfs, ["bash", "-c", f"test -e {marker}; echo $?; ls -A /root | wc -l; ls /"])
    lines = result.stdout.split("\n")
    assert lines[0] == "1"
    assert lines[1] == "0"  # the container's own empty /root, not the host's
    assert sorted(lines[2:-1]) == sorted(entry.name for entry in rootfs.iterdir())


def test_chroot_inside_cannot_climb_out(rootfs: Path, tmp_path: Path) -> None:
    # pivot_root leaves nothing of the host in the mount namespace, even for the container's root.
    marker = tmp_path / "climb-marker"
    marker.write_text("host")
    script = "mkdir -p /jail && cd /jail && chroot /jail /bin/true; cd ../../../../..; ls -A /"
    result = run_in(rootfs, ["bash", "-c", script])
    assert sorted(result.stdout.split()) == sorted(entry.name for entry in rootfs.iterdir())


def test_container_root_is_an_unprivileged_host_uid(rootfs: Path) -> None:
    result = run_in(rootfs, ["bash", "-c", "id -u; touch /root/owned"])
    assert result.stdout == "0\n"
    owner = (rootfs / "root" / "owned").stat().st_uid
    if sandbox.confinement() == "subuid":
        assert owner == sandbox.CONTAINER_ROOT_ID
    else:
        assert owner == os.geteuid()


def test_no_network_and_own_hostname(rootfs: Path) -> None:
    result = run_in(rootfs, ["bash", "-c", "uname -n; hostname; wget -q -T 1 -O- http://192.0.2.1/ 2>&1; echo rc=$?"])
    lines = result.stdout.split("\n")
    assert lines[:2] == ["box", "box"]
    assert "rc=0" not in result.stdout


def test_environment_is_the_containers(rootfs: Path) -> None:
    result = run_in(rootfs, ["bash", "-c", 'echo "$PATH|$HOME|${VIRTUAL_ENV:-}"; cat /etc/os-release | grep ^ID='])
    assert result.stdout == f"{sandbox.CONTAINER_PATH}|/root|\nID=debian\n"


def test_destroy_removes_the_tree_and_refuses_foreign_dirs(rootfs: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "not-a-container"
    foreign.mkdir()
    with pytest.raises(ValueError, match="not a simulated container"):
        sandbox.destroy_rootfs(foreign)
    assert foreign.exists()
    sandbox.destroy_rootfs(rootfs)
    assert not rootfs.exists()
    sandbox.destroy_rootfs(rootfs)  # already gone is fine


def test_ubuntu_template_changes_os_release(tmp_path: Path) -> None:
    tree = sandbox.create_rootfs(tmp_path, 300, "local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.zst")
    result = run_in(tree, ["bash", "-c", ". /etc/os-release; echo $ID $VERSION_ID $VERSION_CODENAME; hostname"])
    assert result.stdout == "ubuntu 22.04 jammy\nCT300\n"
    # Ubuntu 22.04 predates PEP 668's marker: system-wide pip works.
    assert run_in(tree, ["pip3", "install", "requests"]).returncode == 0


def test_tree_layout_and_modes(rootfs: Path) -> None:
    out = run_in(rootfs, ["stat", "-c", "%n %a %U", "/etc/shadow", "/tmp", "/root", "/bin/sh", "/usr/bin/systemctl"])
    assert out.stdout.splitlines() == [
        "/etc/shadow 640 root",
        "/tmp 1777 root",
        "/root 700 root",
        "/bin/sh 777 root",
        "/usr/bin/systemctl 755 root",
    ]
