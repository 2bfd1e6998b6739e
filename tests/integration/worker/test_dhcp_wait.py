"""The address of a DHCP container is awaited as long as DHCP takes (Proxmox lists eth0 without an address until
then), up to the worker's `dhcp_wait`."""

from typing import Any

import pytest

from infrahaus_pvesim import RunningNode, SimulatorConfig
from infrahaus_worker.actors.create import create_container
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient
from tests.integration.worker.helpers import container, operation, request_container


@pytest.fixture
def simulator_config(simulator_config: SimulatorConfig) -> SimulatorConfig:
    simulator_config.dhcp_lease_delay = 1.5
    return simulator_config


async def test_the_address_is_awaited_while_dhcp_takes_its_time(
    worker_ctx: WorkerContext,
    user_client: UserClient,
    registered_node: dict[str, Any],
    make_template: Any,
    sim_node: RunningNode,
) -> None:
    template_id = await make_template("dhcp")
    container_id, op_id, _ = await request_container(user_client, template_id=template_id, vmid=159)
    await create_container(worker_ctx, op_id)
    op = await operation(worker_ctx, op_id)
    assert op.status == "succeeded", op.error
    ct = await container(worker_ctx, container_id)
    assert ct is not None
    assert ct.ip_address is not None
    assert ct.ip_address.startswith("192.168.100.")
    polls = [r for r in sim_node.requests if r.path.endswith("/lxc/159/interfaces")]
    assert len(polls) >= 2
