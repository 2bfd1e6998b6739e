"""A crash resumes, it does not fail: real `infrahaus api` and `infrahaus worker` processes on a PostgreSQL and a
Redis of this suite's own, the simulator in this test's loop. The worker is SIGKILLed and started again while
creations are in different steps, and Redis is restarted while others run their scripts; every creation must still
end `succeeded`, no guest may be created twice, and every guest on the node must belong to a container record."""

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from infrahaus_pvesim import RunningNode, SimNodeConfig, SimulatorConfig
from tests.faults import test_fault_matrix as matrix
from tests.faults.test_fault_matrix import WORKER_ARGS, Product
from tests.fixtures.private_services import PrivateRedis

pytestmark = pytest.mark.e2e

# The fault matrix's processes and product (API, worker, node, slow template), on this module's simulator.
fault_settings = matrix.fault_settings
fault_processes = matrix.fault_processes
product = matrix.product


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    """Proxmox tasks of half a second: each creation spends a visible while in its create and start steps."""
    return SimulatorConfig(
        auth_failure_delay=0.0, data_dir=tmp_path / "pvesim", nodes=[SimNodeConfig(name="pve")], task_duration=0.5
    )


async def wait_any_step(product: Product, op_ids: list[str], steps: set[str], timeout: float = 60) -> str:
    """The first of `op_ids` seen running in one of `steps`."""
    deadline = time.monotonic() + timeout
    while True:
        for op_id in op_ids:
            op = await product.operation(op_id)
            if op["status"] == "running" and op["step"] in steps:
                return op_id
        assert time.monotonic() < deadline, f"no operation reached {steps}\n{product.logs()}"
        await asyncio.sleep(0.05)


def create_tasks(node: RunningNode, vmid: int) -> list[str | None]:
    return [t.exitstatus for t in node.state.tasks.values() if t.type == "vzcreate" and t.id == str(vmid)]


async def test_every_creation_survives_worker_kills_at_different_steps_and_redis_restarts(
    product: Product, private_redis: PrivateRedis
) -> None:
    # Dramatiq would redeliver a dead worker's messages only after two minutes: a resume within this test is the
    # reconciler's doing (an operation silent for 4 s is handed to another worker).
    product.processes.env.update({"INFRAHAUS_WORKER_BROKER_HEARTBEAT": "120", "INFRAHAUS_WORKER_HEARTBEAT_STALE": "4"})

    def restart_worker() -> None:
        product.processes.kill("worker")  # SIGKILL to the whole group: no drain, no cleanup
        product.processes.start("worker", *WORKER_ARGS)

    first = [await product.create(vmid) for vmid in (230, 231, 232)]
    first_ops = [op for op, ct in product.operations.items() if ct in first]
    for steps in ({"create"}, {"start", "prepare"}, {"scripts"}):
        await wait_any_step(product, first_ops, steps)
        restart_worker()

    later = [await product.create(vmid) for vmid in (233, 234)]
    later_ops = [op for op, ct in product.operations.items() if ct in later]
    await wait_any_step(product, later_ops, {"scripts"})
    await asyncio.to_thread(private_redis.restart)

    ops = await product.wait_terminal(timeout=240)
    failed: dict[str, Any] = {k: (v["step"], v["error"]) for k, v in ops.items() if v["status"] != "succeeded"}
    assert not failed, f"{failed}\n{product.logs()}"
    guests = {vmid: g for vmid, g in product.node.state.guests.items() if g.type == "lxc"}
    assert set(guests) == set(product.containers.values()), "a guest no container record accounts for"
    for container_id, vmid in product.containers.items():
        assert create_tasks(product.node, vmid).count("OK") == 1, (vmid, create_tasks(product.node, vmid))
        detail = (await product.call("GET", f"/api/containers/{container_id}")).json()
        assert (detail["lifecycle"], detail["status"]) == ("ready", "running"), detail
        assert guests[vmid].status == "running"
