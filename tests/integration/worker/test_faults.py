"""Failure paths of the creation pipeline: classified errors, crashes, lost workers, secrets kept out."""

import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select, text, update

from infrahaus_domain.models.containers import Operation
from infrahaus_domain.models.nodes import VmidReservation
from infrahaus_domain.settings import Settings
from infrahaus_pvesim import RunningNode
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.actors.lifecycle import delete_container
from infrahaus_worker.actors.operation_run import OperationBusyError
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.reconciler import reconcile
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import container, events, operation, request_container

SLOW_SCRIPT = 'log_info "working"\nsleep 3\nlog_info "done"\n'


async def wait_for_step(ctx: WorkerContext, op_id: str, step: str, *, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = await operation(ctx, op_id)
        if op.step == step or op.status in ("succeeded", "failed", "cancelled"):
            assert op.step == step, f"operation ended at {op.step} ({op.status}) before reaching {step}"
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"operation never reached step {step}")


async def age_heartbeat(ctx: WorkerContext, op_id: str) -> None:
    """Make the operation's last heartbeat a minute old (as if its worker died a while ago)."""
    async with ctx.session() as session:
        stale = datetime.now(UTC) - timedelta(minutes=1)
        await session.execute(update(Operation).where(Operation.id == UUID(op_id)).values(heartbeat_at=stale))


def creates_sent(node: RunningNode, vmid: int) -> int:
    return sum(
        1 for r in node.requests if r.method == "POST" and r.path.endswith("/lxc") and r.params.get("vmid") == str(vmid)
    )


async def test_failing_script_fails_with_exit_code_and_last_lines(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
) -> None:
    template_id = await make_template(
        "failing",
        scripts=[
            ("10-ok", 'log_info "first script fine"\n'),
            ("20-bad", 'for i in 1 2 3; do echo "step $i"; done\nlog_error "cannot continue"\nexit 3\n'),
            ("30-never", 'echo "must not run"\n'),
        ],
    )
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=130)
    await create_container(worker_ctx, op_id)

    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "script_failed"
    assert op.error["exit_code"] == 3
    assert "20-bad" in op.error["detail"]
    assert op.error["task_log_tail"][-4:] == ["step 1", "step 2", "step 3", "[ERROR] cannot continue"]
    assert op.error["remedy"]
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "error"
    assert ct.last_error is not None
    assert ct.last_error["code"] == "script_failed"
    lines = [entry.line for entry in await worker_ctx.logbuffer.lines(UUID(container_id))]
    assert "must not run" not in lines
    assert "[INFO] first script fine" in lines


async def test_node_unreachable_mid_run(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("slow", scripts=[("10-slow", SLOW_SCRIPT)])
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=131)
    task = asyncio.create_task(create_container(worker_ctx, op_id))
    await wait_for_step(worker_ctx, op_id, "scripts")
    sim_node.faults.unreachable = True
    sim_node.faults.drop_ssh_after(0.1)
    await asyncio.wait_for(task, 30)

    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "node_unreachable", op.error
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "error"


async def test_redelivery_after_a_crash_resumes_without_a_second_container(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("crashy", scripts=[("10-slow", SLOW_SCRIPT)])
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=132)
    first = asyncio.create_task(create_container(worker_ctx, op_id))
    await wait_for_step(worker_ctx, op_id, "scripts")
    # The worker dies: its coroutine stops where it is, the operation stays `running`.
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert (await operation(worker_ctx, op_id)).status == "running"

    # Redelivered while the heartbeat still looks alive: refused, the message is retried later.
    with pytest.raises(OperationBusyError):
        await create_container(worker_ctx, op_id)
    # Later, once the dead worker's heartbeat aged, the redelivered message takes over.
    await age_heartbeat(worker_ctx, op_id)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.attempts == 2
    assert creates_sent(sim_node, 132) == 1
    assert [vmid for vmid, g in sim_node.state.guests.items() if g.type == "lxc"] == [132]
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "ready"


async def test_a_resumed_creation_continues_from_its_last_completed_step(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template(
        "steps",
        scripts=[
            ("10-once", "echo run >> /root/runs-10\n"),
            ("20-slow", "echo run >> /root/runs-20\nsleep 3\n"),
        ],
        files=[{"name": "app.conf", "target_path": "/etc/app", "content": "v=1\n", "policy": "backup"}],
    )
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=139)
    first = asyncio.create_task(create_container(worker_ctx, op_id))
    root = None
    deadline = time.monotonic() + 30
    while root is None or not (root / "root/runs-20").exists():
        assert time.monotonic() < deadline, "the second script never started"
        guest = sim_node.state.guests.get(139)
        root = guest.rootfs if guest is not None else None
        await asyncio.sleep(0.05)
    first.cancel()  # the worker dies in the middle of the second script
    await asyncio.gather(first, return_exceptions=True)

    await age_heartbeat(worker_ctx, op_id)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert (root / "root/runs-10").read_text() == "run\n"  # completed before the crash: not run again
    assert (root / "root/runs-20").read_text() == "run\nrun\n"  # interrupted: run again from its start
    # The files step completed before the crash: a second run would have backed the file up.
    assert sorted(p.name for p in (root / "etc/app").iterdir()) == ["app.conf"]
    assert creates_sent(sim_node, 139) == 1


async def test_crash_during_the_create_task_waits_for_that_task(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("plain")
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=133)
    sim_node.faults.latency = 0.3
    first = asyncio.create_task(create_container(worker_ctx, op_id))
    # Dies right after the create request was sent (the task id is checkpointed), before the task finished.
    deadline = time.monotonic() + 20
    while creates_sent(sim_node, 133) == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    sim_node.faults.latency = 0.0

    await age_heartbeat(worker_ctx, op_id)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert creates_sent(sim_node, 133) == 1


async def test_finished_operation_is_not_run_again(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("once")
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=134)
    await create_container(worker_ctx, op_id)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded"
    assert op.attempts == 1
    assert creates_sent(sim_node, 134) == 1


async def test_reconciler_hands_lost_operations_over_and_resends_queued_ones(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    stub_broker: StubBroker,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("lost")
    lost_ct, lost_op, _ = await request_container(user_client, template_id=template_id, vmid=135, hostname="lost")
    _, queued_op, _ = await request_container(user_client, template_id=template_id, vmid=136, hostname="q")
    stub_broker.flush_all()
    async with worker_ctx.unit() as u:
        await u.operations.claim(UUID(lost_op), "dead-worker:1")
        stale = datetime.now(UTC) - timedelta(minutes=5)
        await u.session.execute(update(Operation).where(Operation.id == UUID(lost_op)).values(heartbeat_at=stale))
        await u.session.execute(update(Operation).where(Operation.id == UUID(queued_op)).values(updated_at=stale))

    report = await reconcile(worker_ctx)
    assert report.resumed == [lost_op]
    assert report.failed == []
    assert report.requeued == [queued_op]
    op = await operation(worker_ctx, lost_op)
    assert (op.status, op.heartbeat_at) == ("running", None)
    sent = sorted(m.decode() for m in stub_broker.queues["containers"].queue)
    assert len(sent) == 2
    assert any(lost_op in m for m in sent)
    assert any(queued_op in m for m in sent)

    # A second pass right away changes nothing.
    again = await reconcile(worker_ctx)
    assert (again.failed, again.resumed, again.requeued) == ([], [], [])

    # The re-sent message resumes the operation on the next worker at once (the heartbeat no longer looks alive).
    await create_container(worker_ctx, lost_op)
    op = await operation(worker_ctx, lost_op)
    assert op.status == "succeeded", op.error
    assert op.attempts == 2
    ct = await container(worker_ctx, lost_ct)
    assert ct is not None
    assert ct.lifecycle == "ready"
    assert creates_sent(sim_node, 135) == 1


async def test_an_operation_whose_workers_keep_dying_fails_worker_lost_after_its_attempts(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    settings: Settings,
) -> None:
    template_id = await make_template("doomed")
    lost_ct, lost_op, _ = await request_container(user_client, template_id=template_id, vmid=137)
    attempts = settings.worker.max_attempts
    for attempt in range(1, attempts + 1):
        async with worker_ctx.unit() as u:
            claimed = await u.operations.claim(UUID(lost_op), f"dead-worker:{attempt}")
            assert claimed is not None
            assert claimed.attempts == attempt
        await age_heartbeat(worker_ctx, lost_op)
        report = await reconcile(worker_ctx)
        if attempt < attempts:
            assert (report.resumed, report.failed) == ([lost_op], [])
    assert (report.resumed, report.failed) == ([], [lost_op])
    op = await operation(worker_ctx, lost_op)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "worker_lost"
    assert f"{attempts} attempt" in op.error["detail"]
    ct = await container(worker_ctx, lost_ct)
    assert ct is not None
    assert ct.lifecycle == "error"


async def test_a_worker_thought_lost_stops_once_another_resumed_its_operation(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    """A worker that only stalled (its heartbeat looked dead) notices the takeover at its next beat and stops: the
    operation is finished by the worker that resumed it, once, and nothing is created twice."""
    # Long enough that the stalled worker's next beat (every 0.5 s) comes well before its script could end.
    template_id = await make_template("stalled", scripts=[("10-slow", 'log_info "working"\nsleep 6\n')])
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=138)
    first = asyncio.create_task(create_container(worker_ctx, op_id))
    await wait_for_step(worker_ctx, op_id, "scripts")
    # The reconciler's hand-over, in the same transaction as the aging (the stalled worker's beats go on meanwhile).
    async with worker_ctx.unit() as u:
        stale = datetime.now(UTC) - timedelta(minutes=1)
        await u.session.execute(update(Operation).where(Operation.id == UUID(op_id)).values(heartbeat_at=stale))
        resumed, _ = await u.operations.resume_stale(heartbeat_older_than=timedelta(seconds=30), max_attempts=5)
        assert [str(o.id) for o in resumed] == [op_id]
    second = asyncio.create_task(create_container(worker_ctx, op_id))
    await asyncio.wait_for(first, 15)  # returns quietly: ClaimLost
    await asyncio.wait_for(second, 60)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.attempts == 2
    assert creates_sent(sim_node, 138) == 1
    # The stalled worker was stopped in the middle of its script: only the resuming worker completed it.
    completed = [e for e in await events(worker_ctx, container_id) if e.type == "script_completed"]
    assert len(completed) == 1


async def test_root_password_is_never_stored_logged_or_sent(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    templates: dict[str, dict[str, Any]],
    sim_node: RunningNode,
    stub_broker: StubBroker,
    caplog: Any,
) -> None:
    caplog.set_level("DEBUG")
    generated: list[str] = []

    def recording_password() -> str:
        generated.append(secrets.token_urlsafe(24))
        return generated[-1]

    worker_ctx.root_password = recording_password
    container_id, op_id, created = await request_container(
        user_client, template_id=templates["web-hello"]["id"], vmid=137
    )
    messages = [m for q in stub_broker.queues.values() for m in q.queue]
    await create_container(worker_ctx, op_id)
    assert (await operation(worker_ctx, op_id)).status == "succeeded"

    [password] = generated
    assert len(password) >= 24

    haystacks: list[str] = [str(created), *(m.decode(errors="replace") for m in messages)]
    for path in (
        f"/api/containers/{container_id}",
        f"/api/operations/{op_id}",
        f"/api/containers/{container_id}/events",
    ):
        response = await user_client.http.get(path)
        haystacks.append(response.text)
    async with worker_ctx.session() as session:
        tables = (await session.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        for table in list(tables):
            rows = await session.execute(text(f'SELECT * FROM "{table}"'))  # noqa: S608 - table names from the catalog
            haystacks.extend(str(row) for row in rows)
        reservations = (await session.scalars(select(VmidReservation))).all()
        assert reservations
    haystacks.extend(entry.line for entry in await worker_ctx.logbuffer.lines(UUID(container_id)))
    haystacks.extend(record.getMessage() + str(record.__dict__) for record in caplog.records)
    for haystack in haystacks:
        assert password not in haystack


async def test_duplicate_deliveries_run_the_operation_once(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    """The original message and a reconciler re-send arrive together: one runs, the other backs off."""
    template_id = await make_template("twice")
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=138)
    outcomes = await asyncio.gather(
        create_container(worker_ctx, op_id), create_container(worker_ctx, op_id), return_exceptions=True
    )
    assert sum(isinstance(o, OperationBusyError) for o in outcomes) == 1
    assert sum(o is None for o in outcomes) == 1
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    assert op.attempts == 1
    assert creates_sent(sim_node, 138) == 1


async def test_retry_after_a_failed_script_resumes_on_the_same_container(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template(
        "flaky", scripts=[("10-needs-flag", '[ -f /root/ready ] || { log_error "not ready"; exit 3; }\necho ok\n')]
    )
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=139)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "script_failed"

    # Fix the cause inside the container, and leave a stale `lock: create` like a crashed task would.
    guest = sim_node.state.guests[139]
    assert guest.rootfs is not None
    (guest.rootfs / "root/ready").write_text("")
    sim_node.faults.lock(139, kind="create")

    response = await user_client.http.post(f"/api/containers/{container_id}/retry")
    assert response.status_code == 202, response.text
    retry_op = response.json()["id"]
    await create_container(worker_ctx, retry_op)
    op = await operation(worker_ctx, retry_op)
    assert op.status == "succeeded", op.error
    assert creates_sent(sim_node, 139) == 1
    assert guest.lock is None
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "ready"


async def test_delete_while_creating_cancels_the_creation(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template(
        "cancelled", scripts=[("10-slow", SLOW_SCRIPT), ("20-after", 'echo "second script"\n')]
    )
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=145)
    creation = asyncio.create_task(create_container(worker_ctx, op_id))
    await wait_for_step(worker_ctx, op_id, "scripts")

    response = await user_client.http.delete(f"/api/containers/{container_id}")
    assert response.status_code == 202, response.text
    delete_op = response.json()["id"]
    assert (await operation(worker_ctx, op_id)).status == "cancelled"
    await delete_container(worker_ctx, delete_op)
    await asyncio.wait_for(creation, 30)

    op = await operation(worker_ctx, delete_op)
    assert op.status == "succeeded", op.error
    assert (await operation(worker_ctx, op_id)).status == "cancelled"
    assert await container(worker_ctx, container_id) is None
    assert 145 not in sim_node.state.guests


@pytest.mark.parametrize(
    ("marker", "code"),
    [
        ({"name": "lock-frontend", "target_path": "/var/lib/dpkg", "content": "4242 (apt-get)"}, "apt_locked"),
        ({"name": "offline", "target_path": "/etc/sim", "content": ""}, "network_unreachable"),
    ],
)
async def test_package_failures_are_classified_per_manager(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    marker: dict[str, str],
    code: str,
) -> None:
    # The template's own file puts the container in the failing state right before the packages step.
    template_id = await make_template(
        f"pkg-{code}",
        files=[{**marker, "policy": "replace"}],
        packages=[{"name": "curl", "manager": "apt"}, {"name": "requests", "manager": "pip"}],
    )
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=147)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == code, op.error
    assert op.error["exit_code"] == 100
    assert "apt (exit code 100)" in op.error["detail"]
    trail = await events(worker_ctx, container_id)
    outcomes = {e.meta["manager"]: e.meta["ok"] for e in trail if e.type == "step" and "manager" in e.meta}
    assert outcomes == {"apt": False, "pip": True}  # the other manager still ran


async def test_proxy_error_596_is_node_unreachable(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("proxied")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=148)
    sim_node.faults.fail_http(596, method="POST", path_contains="/lxc")
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "node_unreachable", op.error
    assert creates_sent(sim_node, 148) == 1  # a 596 is never retried blindly
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.lifecycle == "error"


async def test_a_refused_ssh_login_fails_ssh_auth_failed_with_an_ssh_remedy(
    worker_ctx: WorkerContext, user_client: UserClient, registered_node: dict[str, Any], make_template: Any
) -> None:
    response = await user_client.http.patch(
        f"/api/nodes/{registered_node['id']}", json={"ssh_password": "not-the-password"}
    )
    assert response.status_code == 200, response.text
    template_id = await make_template("ssh-needed", scripts=[("10-hello", 'log_info "hello"\n')])
    _, op_id, _ = await request_container(user_client, template_id=template_id, vmid=131)
    await create_container(worker_ctx, op_id)

    op = await operation(worker_ctx, op_id)
    assert op.status == "failed"
    assert op.error is not None
    assert op.error["code"] == "ssh_auth_failed", op.error
    assert "SSH" in op.error["remedy"]
    assert "privilege" not in op.error["remedy"]
