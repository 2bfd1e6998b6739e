"""The bash helper library, sourced by a real (static) bash in a temporary directory."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from infrahaus_worker.helpers import HELPERS_PATH, helpers_script

BASH = shutil.which("bash-static") or shutil.which("bash") or "/bin/bash"


def run(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "INFRAHAUS_CREDENTIALS_DIR": str(tmp_path / "credentials"),
        "INFRAHAUS_OS_RELEASE": str(tmp_path / "os-release"),
    }
    return subprocess.run(
        [BASH, "-c", 'source "$0"; eval "$1"', str(HELPERS_PATH), script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )


def test_library_text_is_packaged() -> None:
    assert helpers_script().startswith(b"# infrahaus helper library")


def test_log_helpers_split_stdout_and_stderr(tmp_path: Path) -> None:
    result = run(tmp_path, 'log_info "hello world"; log_warn careful; log_error broken')
    assert result.stdout == "[INFO] hello world\n"
    assert result.stderr == "[WARN] careful\n[ERROR] broken\n"


def test_save_credential_writes_mode_600_and_replaces_keys(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "save_credential postgresql DB_USER app && save_credential postgresql DB_PASSWORD 'p a$s=1' "
        "&& save_credential postgresql DB_USER admin",
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "credentials" / "postgresql"
    assert path.read_text() == "DB_PASSWORD=p a$s=1\nDB_USER=admin\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["postgresql"]


@pytest.mark.parametrize(
    "call",
    [
        "save_credential ../etc KEY value",
        "save_credential 'a b' KEY value",
        "save_credential svc 'BAD-KEY' value",
        "save_credential svc KEY $'two\\nlines'",
        "save_credential svc KEY",
    ],
)
def test_save_credential_refuses_bad_input(tmp_path: Path, call: str) -> None:
    result = run(tmp_path, call)
    assert result.returncode == 2
    assert "[ERROR]" in result.stderr
    assert not (tmp_path / "credentials").exists() or not any((tmp_path / "credentials").iterdir())


def test_detect_os_reads_os_release(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    assert run(tmp_path, "detect_os").stdout == "debian\n"


def test_detect_os_without_os_release_fails(tmp_path: Path) -> None:
    result = run(tmp_path, "detect_os")
    assert result.returncode == 1
    assert result.stdout == "unknown\n"


def test_detect_pkg_manager_finds_apt_first(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("apk", "apt-get"):
        (bindir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bindir / tool).chmod(0o755)
    result = run(tmp_path, f'PATH="{bindir}"; detect_pkg_manager')
    assert result.stdout == "apt\n"


def test_detect_pkg_manager_without_any_fails(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(tmp_path, f'PATH="{empty}"; detect_pkg_manager')
    assert result.returncode == 1
    assert result.stdout == ""


def test_ensure_installed_skips_present_and_installs_missing(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "apt-get").write_text(f'#!{BASH}\necho "apt-get $* frontend=$DEBIAN_FRONTEND" >> {tmp_path}/apt.log\n')
    (bindir / "apt-get").chmod(0o755)
    (bindir / "curl").write_text("#!/bin/sh\n")
    (bindir / "curl").chmod(0o755)
    result = run(tmp_path, f'PATH="{bindir}"; ensure_installed curl jq')
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "apt.log").read_text()
    assert log == "apt-get install -y -q --no-install-recommends jq frontend=noninteractive\n"


def test_ensure_installed_refuses_option_like_names(tmp_path: Path) -> None:
    result = run(tmp_path, "ensure_installed -oEvil=1")
    assert result.returncode == 2


def test_run_as_user_runs_argv_without_a_shell_string(tmp_path: Path) -> None:
    result = run(tmp_path, 'run_as_user "$(id -un)" printf "%s|" "a b" ";" "$(echo x)"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a b|;|x|"


def test_run_as_user_single_argument_is_a_command_line(tmp_path: Path) -> None:
    result = run(tmp_path, 'run_as_user "$(id -un)" "echo one; echo two"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo\n"


def test_run_as_user_refuses_bad_user(tmp_path: Path) -> None:
    assert run(tmp_path, "run_as_user 'root;id' true").returncode == 2


def test_generate_password_length_and_charset(tmp_path: Path) -> None:
    result = run(tmp_path, "set -o pipefail; generate_password; generate_password 40")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert len(first) == 24
    assert len(second) == 40
    assert first.isalnum()
    assert second.isalnum()
    assert first != second[:24]


def test_generate_password_refuses_silly_length(tmp_path: Path) -> None:
    assert run(tmp_path, "generate_password 3").returncode == 2
