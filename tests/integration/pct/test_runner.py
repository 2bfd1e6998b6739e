"""PctExecRunner against the simulated node over a real SSH connection."""

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from infrahaus_proxmox.errors import ProxmoxLocked, ProxmoxNotFound
from infrahaus_proxmox.pct import (
    KEEP_BYTES,
    MAX_LINE_BYTES,
    ExpectedFile,
    FileMismatch,
    OutputLine,
    PctExecRunner,
    PctNotRunning,
    PctPushFailed,
    PctTimeout,
    SshAuthError,
    SshConnectionLost,
    SshHostKeyMismatch,
    SshUnreachable,
)
from infrahaus_pvesim.ssh import SshHost
from tests.fixtures.pct import PctNode


async def test_interleaved_stdout_and_stderr_keep_their_order(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    # Each line waits for the test to acknowledge the previous one, so the order on the wire is
    # fixed by the command itself and not by timing.
    assert pct_node.running.rootfs is not None
    tmp = pct_node.running.rootfs / "tmp"
    seen: list[OutputLine] = []

    def acknowledge(line: OutputLine) -> None:
        seen.append(line)
        (tmp / f"ack{len(seen)}").touch()

    script = (
        "w() { while [ ! -e /tmp/ack$1 ]; do sleep 0.01; done; }; "
        "echo out1; w 1; echo err1 >&2; w 2; echo out2; w 3; echo err2 >&2; w 4; printf tail"
    )
    result = await pct_runner.exec(100, ["bash", "-c", script], timeout=20, on_line=acknowledge)

    expected = [
        OutputLine("stdout", "out1"),
        OutputLine("stderr", "err1"),
        OutputLine("stdout", "out2"),
        OutputLine("stderr", "err2"),
        OutputLine("stdout", "tail"),
    ]
    assert result.lines == expected
    assert seen == expected
    assert result.stdout == ["out1", "out2", "tail"]
    assert result.stderr == ["err1", "err2"]
    assert result.exit_code == 0


async def test_lines_stream_before_the_command_ends(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    # The command only finishes once the test, having seen its first line, creates /tmp/go.
    assert pct_node.running.rootfs is not None
    go = pct_node.running.rootfs / "tmp" / "go"
    script = "echo waiting; while [ ! -e /tmp/go ]; do sleep 0.02; done; echo released"
    stream = pct_runner.stream(100, ["bash", "-c", script], timeout=20)
    texts = []
    async for line in stream:
        texts.append(line.text)
        if line.text == "waiting":
            go.touch()
    assert texts == ["waiting", "released"]
    assert stream.exit_code == 0


@pytest.mark.parametrize(("argv", "code"), [(["true"], 0), (["false"], 1), (["bash", "-c", "exit 42"], 42)])
async def test_exit_codes_come_back(pct_runner: PctExecRunner, argv: list[str], code: int) -> None:
    assert (await pct_runner.exec(100, argv, timeout=10)).exit_code == code


async def test_unknown_command_in_container_is_127(pct_runner: PctExecRunner) -> None:
    result = await pct_runner.exec(100, ["no-such-tool", "--x"], timeout=10)
    assert result.exit_code == 127


async def test_push_writes_content_and_mode_and_removes_the_temp_file(
    pct_node: PctNode, pct_runner: PctExecRunner
) -> None:
    content = b"line one\nsecret=\xc3\xa9$(id)\n\x00\x01binary tail"
    await pct_runner.exec(100, ["mkdir", "-p", "/etc/app"], timeout=10)
    await pct_runner.push(100, content, "/etc/app/config.env", mode=0o600)

    assert pct_node.running.rootfs is not None
    assert (pct_node.running.rootfs / "etc/app/config.env").read_bytes() == content
    stat = await pct_runner.exec(100, ["stat", "-c", "%a %U:%G", "/etc/app/config.env"], timeout=10)
    assert stat.stdout == ["600 root:root"]
    assert list((pct_node.ssh.host_dir / "tmp").iterdir()) == []


async def test_push_to_a_stopped_container_fails_and_still_cleans_up(
    pct_node: PctNode, pct_runner: PctExecRunner
) -> None:
    with pytest.raises(PctNotRunning, match=r"^can only push files to a running CT$"):
        await pct_runner.push(101, b"x", "/root/x", mode=0o644)
    assert list((pct_node.ssh.host_dir / "tmp").iterdir()) == []


async def test_exec_in_stopped_or_missing_container(pct_runner: PctExecRunner) -> None:
    with pytest.raises(PctNotRunning, match=r"^container '101' not running!$"):
        await pct_runner.exec(101, ["true"], timeout=10)
    with pytest.raises(ProxmoxNotFound, match=r"nodes/pve/lxc/999\.conf"):
        await pct_runner.exec(999, ["true"], timeout=10)


async def test_command_timeout_kills_it_and_the_runner_goes_on(pct_runner: PctExecRunner) -> None:
    started = time.monotonic()
    with pytest.raises(PctTimeout):
        await pct_runner.exec(100, ["sleep", "30"], timeout=0.5)
    assert time.monotonic() - started < 10
    assert (await pct_runner.exec(100, ["echo", "after"], timeout=10)).stdout == ["after"]


async def test_connection_dropped_mid_command_is_reported_then_recovered_once(
    pct_node: PctNode, pct_runner: PctExecRunner
) -> None:
    await pct_runner.connect()
    pct_node.faults.drop_ssh_after(0.3)
    with pytest.raises(SshConnectionLost):
        await pct_runner.exec(100, ["sleep", "10"], timeout=20)
    pct_node.faults.drop_ssh_after(None)

    result = await pct_runner.exec(100, ["echo", "again"], timeout=10)
    assert result.stdout == ["again"]
    assert pct_runner.reconnects == 1


async def test_connection_dropped_while_idle_reconnects_transparently(
    pct_node: PctNode, pct_runner: PctExecRunner
) -> None:
    assert (await pct_runner.exec(100, ["echo", "one"], timeout=10)).stdout == ["one"]
    pct_node.ssh.drop_connections()
    assert (await pct_runner.exec(100, ["echo", "two"], timeout=10)).stdout == ["two"]
    assert pct_runner.reconnects == 1


async def test_pinned_host_key_is_checked(pct_node: PctNode) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    runner = PctExecRunner(pct_node.target(host_key=other), connect_timeout=5)
    with pytest.raises(SshHostKeyMismatch):
        await runner.connect()
    await runner.aclose()

    pinned = PctExecRunner(pct_node.target())
    assert await pinned.connect() == pct_node.ssh.public_key
    await pinned.aclose()


async def test_trust_on_first_use_reports_the_key(pct_node: PctNode) -> None:
    runner = PctExecRunner(pct_node.target(host_key=None))
    before = runner.host_key
    seen = await runner.connect()
    assert before is None
    assert seen == pct_node.ssh.public_key == runner.host_key
    await runner.aclose()


async def test_wrong_password_and_public_key_login(pct_node: PctNode) -> None:
    with pytest.raises(SshAuthError):
        await PctExecRunner(pct_node.target(password="wrong")).connect()

    key = asyncssh.generate_private_key("ssh-ed25519")
    pct_node.ssh.authorize_key("root", key.export_public_key("openssh").decode())
    runner = PctExecRunner(pct_node.target(password=None, private_key=key.export_private_key("openssh").decode()))
    assert (await runner.exec(100, ["id", "-u"], timeout=10)).stdout == ["0"]
    await runner.aclose()


async def test_unreachable_node(pct_node: PctNode) -> None:
    pct_node.faults.unreachable = True
    with pytest.raises(SshUnreachable):
        await PctExecRunner(pct_node.target(), connect_timeout=5).connect()
    pct_node.faults.unreachable = False
    runner = PctExecRunner(pct_node.target())
    assert (await runner.exec(100, ["true"], timeout=10)).exit_code == 0
    await runner.aclose()


@pytest.mark.parametrize(
    "name",
    ["; rm -rf /", "$(id)", "`id`", 'it\'s "quoted"', "two\nlines", "*", "a\\b", "-n", "$HOME && echo pwned"],
)
async def test_shell_metacharacters_arrive_literally(pct_node: PctNode, pct_runner: PctExecRunner, name: str) -> None:
    # The value goes through the SSH command line, the node's argv split and the container's exec.
    result = await pct_runner.exec(100, ["bash", "-c", 'printf %s "$1" > /tmp/value', "bash", name], timeout=10)
    assert result.exit_code == 0
    assert pct_node.running.rootfs is not None
    assert (pct_node.running.rootfs / "tmp" / "value").read_text() == name


async def test_push_to_a_path_with_metacharacters(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    path = "/tmp/odd name;$(id)'x'"
    await pct_runner.push(100, b"ok", path)
    assert pct_node.running.rootfs is not None
    assert (pct_node.running.rootfs / "tmp" / "odd name;$(id)'x'").read_bytes() == b"ok"


async def test_set_features_and_unlock(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    await pct_runner.set_features(101, {"nesting": True, "keyctl": True, "fuse": False})
    # Stored the way PVE prints a property string (keys sorted).
    assert pct_node.stopped.config["features"] == "fuse=0,keyctl=1,nesting=1"

    pct_node.faults.lock(101, "create")
    with pytest.raises(ProxmoxLocked, match=r"CT is locked \(create\)"):
        await pct_runner.set_features(101, {"nesting": True})
    await pct_runner.unlock(101)
    assert pct_node.stopped.lock is None
    # pct unlock without a lock fails on the node; the runner treats it as done.
    bare = await pct_runner.run_host(["pct", "unlock", "101"], timeout=10)
    assert (bare.exit_code, bare.stderr) == (255, ["no lock found trying to remove any lock"])
    await pct_runner.unlock(101)


async def test_features_set_on_a_running_container_wait_for_the_next_start(
    pct_node: PctNode, pct_runner: PctExecRunner
) -> None:
    await pct_runner.set_features(100, {"nesting": True})
    assert "features" not in pct_node.running.config
    assert pct_node.running.pending == {"features": "nesting=1"}
    listed = await pct_runner.run_host(["pct", "config", "100", "--current"], timeout=10)
    assert not any(line.startswith("features:") for line in listed.stdout)
    # Setting what the container already runs with is no pending change (AbstractConfig cleanup_pending).
    pct_node.running.config["features"] = "nesting=1"
    pct_node.running.pending.clear()
    await pct_runner.set_features(100, {"nesting": True})
    assert pct_node.running.pending == {}


async def test_the_config_file_lock_times_out_like_proxmox(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    pct_node.tasks.lock_timeout = 0.2
    pct_node.faults.on_hold_config_lock(lambda vmid, seconds: None)
    async with pct_node.tasks.config_lock(100):
        with pytest.raises(
            ProxmoxLocked, match=r"^can't lock file '/run/lock/lxc/pve-config-100\.lock' - got timeout$"
        ):
            await pct_runner.push(100, b"x", "/root/x")
        with pytest.raises(ProxmoxLocked, match="got timeout"):
            await pct_runner.set_features(100, {"nesting": True})


async def test_run_host(pct_runner: PctExecRunner) -> None:
    status = await pct_runner.run_host(["pct", "status", "100"], timeout=10)
    assert status.stdout == ["status: running"]
    missing = await pct_runner.run_host(["qm", "list"], timeout=10)
    assert missing.exit_code == 127
    assert missing.stderr == ["bash: line 1: qm: command not found"]


async def test_concurrent_commands_share_one_connection(pct_runner: PctExecRunner) -> None:
    results = await asyncio.gather(*(pct_runner.exec(100, ["echo", str(i)], timeout=10) for i in range(8)))
    assert [r.stdout for r in results] == [[str(i)] for i in range(8)]
    assert pct_runner.reconnects == 0


def host_processes_with(marker: str) -> list[int]:
    """PIDs of host processes whose command line contains ``marker`` (containers are host processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                pids.append(int(entry.name))
    return pids


async def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_command_is_killed_when_the_client_goes_away(pct_runner: PctExecRunner) -> None:
    marker = "987.654321"
    running = asyncio.ensure_future(pct_runner.exec(100, ["sleep", marker], timeout=60))
    await wait_until(lambda: bool(host_processes_with(f"sleep {marker}")))
    await pct_runner.aclose()
    with pytest.raises(SshConnectionLost):
        await running
    await wait_until(lambda: not host_processes_with(f"sleep {marker}"))


async def test_timed_out_command_does_not_linger(pct_runner: PctExecRunner) -> None:
    marker = "876.54321"
    with pytest.raises(PctTimeout):
        await pct_runner.exec(100, ["sleep", marker], timeout=0.5)
    await wait_until(lambda: not host_processes_with(f"sleep {marker}"))


async def test_blackholed_node_times_out_as_unreachable(pct_node: PctNode) -> None:
    pct_node.faults.blackhole = True
    started = time.monotonic()
    with pytest.raises(SshUnreachable):
        await PctExecRunner(pct_node.target(), connect_timeout=1).connect()
    assert time.monotonic() - started < 10


async def test_node_latency_delays_each_command(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    await pct_runner.connect()
    pct_node.faults.latency = 0.3
    started = time.monotonic()
    assert (await pct_runner.run_host(["true"], timeout=10)).exit_code == 0
    assert time.monotonic() - started >= 0.3


def test_malformed_keys_are_refused_up_front(pct_node: PctNode) -> None:
    with pytest.raises(ValueError, match="host_key"):
        PctExecRunner(pct_node.target(host_key="ssh-ed25519 not-base64!"))
    with pytest.raises(ValueError, match="private_key") as info:
        PctExecRunner(pct_node.target(private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecret\n"))
    assert "AAAAsecret" not in str(info.value)


async def test_stdin_and_large_output(pct_runner: PctExecRunner) -> None:
    payload = b"0123456789" * 50_000
    counted = await pct_runner.exec(100, ["bash", "-c", "cat > /tmp/in; wc -c < /tmp/in"], timeout=30, stdin=payload)
    assert counted.stdout == [str(len(payload))]
    big = await pct_runner.exec(100, ["bash", "-c", "seq 1 20000"], timeout=30)
    assert big.stdout == [str(i) for i in range(1, 20001)]


async def test_host_key_survives_a_restart(pct_node: PctNode) -> None:
    before = pct_node.ssh.public_key
    await pct_node.ssh.stop()
    again = SshHost(
        pct_node.state,
        host="127.0.0.1",
        port=0,
        host_key_path=pct_node.state.data_dir / "ssh_host_ed25519_key",
        users={"root": "demo"},
        faults=pct_node.faults,
        tasks=pct_node.tasks,
    )
    port = await again.start()
    try:
        runner = PctExecRunner(pct_node.target(port=port, host_key=before))
        assert await runner.connect() == before
        await runner.aclose()
    finally:
        await again.stop()


async def test_commands_get_a_clean_explicit_environment(pct_runner: PctExecRunner) -> None:
    # Bare `pct exec` hands the SSH session's environment to the container (pct's --keep-env default) ...
    raw = await pct_runner.run_host(["pct", "exec", "100", "--", "env"], timeout=10)
    leaked = dict(line.split("=", 1) for line in raw.stdout)
    assert leaked["PATH"] == "/sbin:/bin:/usr/sbin:/usr/bin"
    assert "LANG" in leaked
    assert "SSH_CONNECTION" in leaked
    # ... the runner starts every command with exactly what it chose.
    clean = await pct_runner.exec(100, ["env"], timeout=10)
    assert sorted(clean.stdout) == [
        "HOME=/root",
        "LC_ALL=C.UTF-8",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]


async def test_the_time_limit_is_enforced_inside_the_container(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    marker = "sleep 31.25"
    # The container's own `timeout` ends the command (exit 124) well before the node's, 15 s later, could.
    started = time.monotonic()
    with pytest.raises(PctTimeout):
        await pct_runner.exec(100, ["bash", "-c", marker], timeout=0.5)
    assert time.monotonic() - started < 5
    await wait_until(lambda: host_processes_with(marker) == [])


async def test_push_failures_inside_the_container_are_reported_although_pct_exits_0(
    pct_node: PctNode, pct_runner: PctExecRunner
) -> None:
    raw = await pct_runner.run_host(["pct", "push", "100", "/nonexistent", "/root/x"], timeout=10)
    assert (raw.exit_code, raw.stderr) == (0, ["failed to open /nonexistent for reading"])
    with pytest.raises(PctPushFailed, match="failed to create file: /no/such/dir/x: No such file or directory"):
        await pct_runner.push(100, b"x", "/no/such/dir/x")
    assert list((pct_node.ssh.host_dir / "tmp").iterdir()) == []


async def test_verify_files_sees_what_a_silent_push_failure_left(pct_node: PctNode, pct_runner: PctExecRunner) -> None:
    good, bad = b"all of it\n" * 100, b"this one is cut short\n" * 100
    await pct_runner.push(100, good, "/root/good.txt", mode=0o640)
    pct_node.faults.corrupt_next_push(100)
    await pct_runner.push(100, bad, "/root/bad.txt", mode=0o600)
    expected = [
        ExpectedFile(path="/root/good.txt", sha256=hashlib.sha256(good).hexdigest(), size=len(good), mode=0o640),
        ExpectedFile(path="/root/bad.txt", sha256=hashlib.sha256(bad).hexdigest(), size=len(bad), mode=0o600),
        ExpectedFile(path="/root/absent", sha256="0" * 64, size=1, mode=0o644),
        ExpectedFile(path="/root/good.txt", sha256=hashlib.sha256(good).hexdigest(), size=len(good), mode=0o644),
    ]
    assert await pct_runner.verify_files(100, expected) == [
        FileMismatch("/root/bad.txt", f"size {len(bad) // 2}, expected {len(bad)}"),
        FileMismatch("/root/absent", "missing"),
        FileMismatch("/root/good.txt", "mode 640, expected 644"),
    ]
    assert await pct_runner.verify_files(100, expected[:1]) == []


async def test_output_is_bounded_per_line_and_per_command(pct_runner: PctExecRunner) -> None:
    # 3 MB in 8 KB lines, then one 5 MB line without a newline: the result keeps the last MiB of lines, each cut.
    script = "yes \"$(head -c 8000 /dev/zero | tr '\\0' x)\" | head -n 375; head -c 5000000 /dev/zero | tr '\\0' z"
    result = await pct_runner.exec(100, ["bash", "-c", script], timeout=60)
    assert result.exit_code == 0
    assert sum(len(line.text) for line in result.lines) <= KEEP_BYTES + MAX_LINE_BYTES
    assert result.omitted_lines > 0
    assert result.omitted_lines + len(result.lines) == 376
    assert result.omitted_bytes >= 8000 * result.omitted_lines
    last = result.stdout[-1]
    assert last.startswith("z" * MAX_LINE_BYTES)
    assert last.endswith(f"[... {5_000_000 - MAX_LINE_BYTES} more bytes of this line cut]")
