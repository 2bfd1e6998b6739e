"""Allow-lists of the plan, failure classification, and the time limits from the environment."""

import pytest

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
from infrahaus_proxmox.pct import PctTimeout, SshAuthError, SshUnreachable
from infrahaus_worker.pipeline.failures import REMEDIES, StepError, classify, classify_text, tail
from infrahaus_worker.pipeline.packages import commands
from infrahaus_worker.pipeline.plan import Limits, PackagePlan, PlanError, check_dir, check_name, package_spec


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        (PackagePlan(name="nginx", manager="apt"), "nginx"),
        (PackagePlan(name="nginx", manager="apt", version="1.22.1-9"), "nginx=1.22.1-9"),
        (PackagePlan(name="flask", manager="pip", version="3.0.0"), "flask==3.0.0"),
        (PackagePlan(name="flask", manager="pip", version="==3.0.0"), "flask==3.0.0"),
        (PackagePlan(name="gunicorn", manager="pip", version=">=21,<23"), "gunicorn>=21,<23"),
        (PackagePlan(name="uvicorn[standard]", manager="pip"), "uvicorn[standard]"),
        (PackagePlan(name="@scope/tool", manager="npm", version="^1.2"), "@scope/tool@^1.2"),
    ],
)
def test_package_spec(package: PackagePlan, expected: str) -> None:
    assert package_spec(package) == expected


@pytest.mark.parametrize(
    "package",
    [
        PackagePlan(name="-oAPT::Update=evil", manager="apt"),
        PackagePlan(name="a b", manager="pip"),
        PackagePlan(name="x;rm -rf /", manager="npm"),
        PackagePlan(name="nginx", manager="apt", version=">=1"),
        PackagePlan(name="nginx", manager="apt", version="1 2"),
        PackagePlan(name="tool", manager="custom"),
    ],
)
def test_package_spec_refuses(package: PackagePlan) -> None:
    with pytest.raises(PlanError):
        package_spec(package)


def test_install_commands_are_argv_lists() -> None:
    apt = commands("apt", ["curl", "jq=1.6"])
    assert apt[-1][-2:] == ["curl", "jq=1.6"]
    assert "DEBIAN_FRONTEND=noninteractive" in apt[-1]
    assert "-y" in apt[-1]
    assert commands("npm", ["x"])[0][:3] == ["npm", "install", "--global"]
    assert commands("pip", ["x"])[0][-1] == "x"
    with pytest.raises(PlanError):
        commands("brew", ["x"])


@pytest.mark.parametrize("path", ["/etc", "/opt/app/", "/", "/srv/www-data/v1.2"])
def test_check_dir_accepts(path: str) -> None:
    assert check_dir(path) == (path.rstrip("/") or "/")


@pytest.mark.parametrize("path", ["etc", "/etc/../root", "/etc/./x", "/a//b", "/a b", "/a;b", "/$(id)"])
def test_check_dir_refuses(path: str) -> None:
    with pytest.raises(PlanError):
        check_dir(path)


@pytest.mark.parametrize("name", ["../x", "-rf", "a/b", "", "a b", "$x"])
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(PlanError):
        check_name(name, "file name")


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
        (SshAuthError("auth failed"), "permission_denied"),
        (ProxmoxValidationError("bad", {"ostemplate": "no such volume"}), "template_missing"),
        (ProxmoxTaskFailed("UPID:x", "unable to create CT 100 - no space left on device", []), "storage_full"),
        (ProxmoxTaskFailed("UPID:x", "error", ["volume 'local:vztmpl/x.tar.zst' does not exist"]), "template_missing"),
        (ProxmoxTaskFailed("UPID:x", "CT is locked (create)", []), "pve_locked"),
        (ProxmoxTaskFailed("UPID:x", "something odd", ["line"]), "task_failed"),
        (ValueError("secret-ish text"), "internal_error"),
    ],
)
def test_classify(exc: BaseException, code: str) -> None:
    info = classify(exc, step="create")
    assert info.code == code
    assert info.step == "create"
    assert info.remedy == REMEDIES[code]


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


def test_limits_from_env() -> None:
    limits = Limits.from_env({"INFRAHAUS_WORKER_SCRIPT": "60", "INFRAHAUS_WORKER_SHUTDOWN_TIMEOUT": "30"})
    assert limits.script == 60
    assert limits.shutdown_timeout == 30
    assert limits.creation == 7200
    with pytest.raises(PlanError, match="INFRAHAUS_WORKER_CREATION"):
        Limits.from_env({"INFRAHAUS_WORKER_CREATION": "soon"})
    with pytest.raises(PlanError, match="positive"):
        Limits.from_env({"INFRAHAUS_WORKER_SCRIPT": "0"})
