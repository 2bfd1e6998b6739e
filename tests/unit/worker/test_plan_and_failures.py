"""Install arguments from the shared allow-list, failure classification, and the time limits from the environment."""

import pytest

from infrahaus_domain.allowlist import UnsafeValueError, install_argument
from infrahaus_domain.containers.schemas import SpecPackage
from infrahaus_domain.errors import SettingsError
from infrahaus_domain.outbound import OutboundDeniedError
from infrahaus_domain.settings import Settings
from infrahaus_proxmox.errors import (
    ProxmoxConflict,
    ProxmoxConnectTimeout,
    ProxmoxLocked,
    ProxmoxPermissionError,
    ProxmoxProxyError,
    ProxmoxTaskFailed,
    ProxmoxTimeout,
    ProxmoxUnreachable,
    ProxmoxValidationError,
)
from infrahaus_proxmox.pct import (
    PctNotRunning,
    PctPushFailed,
    PctTimeout,
    SshAuthError,
    SshHostKeyMismatch,
    SshUnreachable,
)
from infrahaus_worker.pipeline.failures import REMEDIES, StepError, classify, classify_text, tail
from infrahaus_worker.pipeline.packages import UnknownPackageManagerError, commands


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        (SpecPackage(name="nginx", manager="apt"), "nginx"),
        (SpecPackage(name="nginx", manager="apt", version="1.22.1-9"), "nginx=1.22.1-9"),
        (SpecPackage(name="flask", manager="pip", version="3.0.0"), "flask==3.0.0"),
        (SpecPackage(name="flask", manager="pip", version="==3.0.0"), "flask==3.0.0"),
        (SpecPackage(name="gunicorn", manager="pip", version=">=21,<23"), "gunicorn>=21,<23"),
        (SpecPackage(name="@scope/tool", manager="npm", version="^1.2"), "@scope/tool@^1.2"),
    ],
)
def test_install_argument(package: SpecPackage, expected: str) -> None:
    assert install_argument(package.manager, package.name, package.version) == expected


@pytest.mark.parametrize(
    "package",
    [
        SpecPackage(name="-oAPT::Update=evil", manager="apt"),
        SpecPackage(name="a b", manager="pip"),
        SpecPackage(name="x;rm -rf /", manager="npm"),
        SpecPackage(name="nginx", manager="apt", version=">=1"),
        SpecPackage(name="nginx", manager="apt", version="1 2"),
    ],
)
def test_install_argument_refuses(package: SpecPackage) -> None:
    with pytest.raises(UnsafeValueError):
        install_argument(package.manager, package.name, package.version)


def test_install_commands_are_argv_lists() -> None:
    apt = commands("apt", ["curl", "jq=1.6"])
    assert apt[-1][-2:] == ["curl", "jq=1.6"]
    assert "DEBIAN_FRONTEND=noninteractive" in apt[-1]
    assert "-y" in apt[-1]
    assert commands("npm", ["x"])[0][:3] == ["npm", "install", "--global"]
    assert commands("pip", ["x"])[0][-1] == "x"
    with pytest.raises(UnknownPackageManagerError):
        commands("brew", ["x"])


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ProxmoxUnreachable("connection refused"), "node_unreachable"),
        (ProxmoxProxyError("596 Broken pipe", status=596), "node_unreachable"),
        (ProxmoxConnectTimeout("connect timeout"), "node_unreachable"),
        (SshUnreachable("ssh refused"), "node_unreachable"),
        (ProxmoxTimeout("task still running"), "timeout"),
        (PctTimeout("command timed out"), "timeout"),
        (TimeoutError(), "timeout"),
        (ProxmoxLocked("CT is locked (backup)"), "pve_locked"),
        (ProxmoxConflict("CT 100 already exists"), "vmid_taken"),
        (ProxmoxPermissionError("changing feature flags is only allowed for root@pam"), "permission_denied"),
        (SshAuthError("auth failed"), "ssh_auth_failed"),
        (SshHostKeyMismatch("another host key"), "ssh_host_key_mismatch"),
        (OutboundDeniedError("Connections to 169.254.169.254:8006 are not allowed"), "outbound_denied"),
        (ProxmoxValidationError("bad", {"ostemplate": "no such volume"}), "template_missing"),
        (ProxmoxTaskFailed("UPID:x", "unable to create CT 100 - no space left on device", []), "storage_full"),
        (ProxmoxTaskFailed("UPID:x", "error", ["volume 'local:vztmpl/x.tar.zst' does not exist"]), "template_missing"),
        (ProxmoxTaskFailed("UPID:x", "CT is locked (create)", []), "pve_locked"),
        (
            ProxmoxTaskFailed("UPID:x", "can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout", []),
            "pve_locked",
        ),
        # Proxmox's own words for a template file that is not there (pve-container create_vm, restore_archive).
        (
            ProxmoxTaskFailed("UPID:x", "unable to create CT 100 - can't find file 'local:vztmpl/x.tar.zst'", []),
            "template_missing",
        ),
        (ProxmoxTaskFailed("UPID:x", "something odd", ["line"]), "task_failed"),
        (
            ProxmoxValidationError("storage 'x' does not exist", {"storage": "storage 'x' does not exist"}, status=500),
            "validation_failed",
        ),
        (ProxmoxValidationError("Parameter verification failed.", {"net0": "invalid format"}), "validation_failed"),
        (PctNotRunning("container '100' not running!"), "not_running"),
        (PctNotRunning("can only push files to a running CT"), "not_running"),
        (PctPushFailed("pct push to /x failed: failed to create file: /x: Permission denied"), "file_failed"),
        (ValueError("secret-ish text"), "internal_error"),
    ],
)
def test_classify(exc: BaseException, code: str) -> None:
    info = classify(exc, step="create")
    assert info.code == code
    assert info.step == "create"
    assert info.remedy == REMEDIES[code]


def test_a_refused_parameter_is_named() -> None:
    info = classify(ProxmoxValidationError("SSH public key validation error", {"ssh-public-keys": "bad"}, status=500))
    assert (info.code, info.field) == ("validation_failed", "ssh-public-keys")


def test_classify_keeps_task_log_tail_and_hides_unexpected_text() -> None:
    info = classify(ProxmoxTaskFailed("UPID:x", "boom", [f"line {i}" for i in range(50)]))
    assert info.task_log_tail == [f"line {i}" for i in range(30, 50)]
    assert classify(RuntimeError("password=hunter2")).detail == "unexpected RuntimeError"


def test_step_error_passes_through() -> None:
    error = StepError.of("script_failed", "Script x exited with code 3", exit_code=3, last_lines=["a"])
    info = classify(error, step="scripts")
    assert (info.code, info.exit_code, info.step, info.last_lines) == ("script_failed", 3, "scripts", ["a"])
    assert info.task_log_tail is None


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        (["E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234"], "apt_locked"),
        (
            ["W: Failed to fetch http://deb.debian.org/  Temporary failure resolving 'deb.debian.org'"],
            "network_unreachable",
        ),
        (["npm ERR! code EAI_AGAIN"], "network_unreachable"),
        (["E: Unable to locate package nope"], "package_failed"),
    ],
)
def test_classify_text(lines: list[str], code: str) -> None:
    assert classify_text(lines, "package_failed") == code


def test_tail_cuts_long_lines() -> None:
    assert tail(["x" * 1000], 5) == ["x" * 500]


def test_worker_timings_from_env() -> None:
    timings = Settings.from_env(
        {"INFRAHAUS_WORKER_SCRIPT": "60", "INFRAHAUS_WORKER_SHUTDOWN_TIMEOUT": "30"}
    ).worker.timings
    assert timings.script == 60
    assert timings.shutdown_timeout == 30
    assert timings.creation == 7200
    with pytest.raises(SettingsError, match="INFRAHAUS_WORKER_CREATION"):
        Settings.from_env({"INFRAHAUS_WORKER_CREATION": "soon"})
    with pytest.raises(SettingsError, match="positive"):
        Settings.from_env({"INFRAHAUS_WORKER_SCRIPT": "0"})
