"""POST /api/containers: validation, defaults, VMID reservation races, idempotency, the job message."""

import asyncio
from typing import Any

import httpx
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.models.containers import Container, Operation
from infrahaus_domain.models.nodes import VmidReservation
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.state import SimGuest
from tests.fixtures.api import UserClient, assert_problem, sent_jobs
from tests.integration.containers.conftest import DEBIAN, create_body, create_container, put_guest

TEMPLATE = {
    "name": "web",
    "os_template": DEBIAN,
    "cores": 2,
    "memory_mb": 1024,
    "disk_gb": 4,
    "storage": "local-lvm",
    "bridge": "vmbr0",
    "keyctl": True,
    "scripts": [
        {"name": "10-first", "content": "echo first"},
        {"name": "20-second", "content": "echo second"},
        {"name": "30-off", "content": "echo off", "enabled": False},
    ],
    "files": [{"name": "motd", "target_path": "/etc", "content": "hello", "policy": "replace"}],
    "packages": [{"name": "curl", "manager": "apt"}, {"name": "flask", "manager": "pip"}],
}


async def make_template(client: UserClient) -> dict[str, Any]:
    response = await client.http.post("/api/templates", json=TEMPLATE)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def count(db: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_create_answers_202_and_sends_the_job_after_commit(
    user_client: UserClient,
    registered_node: dict[str, Any],
    stub_broker: StubBroker,
    db: async_sessionmaker[AsyncSession],
) -> None:
    template = await make_template(user_client)
    scripts = {s["name"]: s["id"] for s in template["scripts"]}
    response = await user_client.http.post(
        "/api/containers",
        json=create_body(
            template_id=template["id"],
            vmid=150,
            scripts=[
                {"id": scripts["20-second"]},
                {"id": scripts["10-first"]},
                {"id": scripts["30-off"], "enabled": False},
            ],
            packages={"managers": ["apt"], "extra": ["htop"]},
        ),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    operation, container = body["operation"], body["container"]
    assert response.headers["location"] == f"/api/operations/{operation['id']}"
    assert operation["kind"] == "create"
    assert operation["status"] == "queued"
    assert operation["progress"] == 0
    assert container["lifecycle"] == "creating"
    assert container["vmid"] == 150
    assert container["node"] == {"id": registered_node["id"], "name": registered_node["name"]}
    assert container["template"] == {"id": template["id"], "name": "web"}

    jobs = sent_jobs(stub_broker)
    assert [(j.actor_name, j.queue_name, j.kwargs) for j in jobs] == [
        ("container.create", "containers", {"operation_id": operation["id"]})
    ]
    async with db() as session:
        # Committed before the message went out: a separate connection sees it.
        stored = await session.get(Container, container["id"])
        op = await session.get(Operation, operation["id"])
        assert stored is not None
        assert op is not None
        assert op.status == "queued"
        spec = stored.request
    assert spec["cores"] == 2
    assert spec["memory_mb"] == 1024
    assert spec["keyctl"] is True
    assert [s["name"] for s in spec["scripts"]] == ["20-second", "10-first"]
    assert {(p["manager"], p["name"]) for p in spec["packages"]} == {("apt", "curl"), ("apt", "htop")}
    assert [f["name"] for f in spec["files"]] == ["motd"]
    assert "password" not in str(spec).lower()

    got = await user_client.http.get(response.headers["location"])
    assert got.status_code == 200
    assert got.json()["id"] == operation["id"]


async def test_defaults_come_from_the_template_and_scripts_default_to_enabled_ones(
    user_client: UserClient, registered_node: dict[str, Any], db: async_sessionmaker[AsyncSession]
) -> None:
    template = await make_template(user_client)
    body = await create_container(user_client, template_id=template["id"], os_template=None)
    async with db() as session:
        stored = await session.get(Container, body["container"]["id"])
        assert stored is not None
    assert stored.request["os_template"] == DEBIAN
    assert [s["name"] for s in stored.request["scripts"]] == ["10-first", "20-second"]
    assert stored.vmid >= 100


INVALID: list[tuple[dict[str, Any], set[str]]] = [
    ({"hostname": "-bad-"}, {"hostname"}),
    ({"hostname": "a" * 64}, {"hostname"}),
    ({"vmid": 99}, {"vmid"}),
    ({"vmid": 1_000_000_000}, {"vmid"}),
    ({"cores": 0}, {"cores"}),
    ({"memory_mb": 8}, {"memory_mb"}),
    ({"disk_gb": 0}, {"disk_gb"}),
    ({"network": {"mode": "static"}}, {"network.ip_cidr"}),
    ({"network": {"mode": "static", "ip_cidr": "10.0.0.5"}}, {"network.ip_cidr"}),
    ({"network": {"mode": "static", "ip_cidr": "10.0.0.5/24", "gateway": "nope"}}, {"network.gateway"}),
    ({"packages": {"extra": ["ok-pkg", "rm -rf /"]}}, {"packages.extra[1]"}),
    ({"storage": "bad storage;", "bridge": "$(reboot)"}, {"storage", "bridge"}),
    ({"os_template": None}, {"os_template"}),
    ({"unknown_field": 1}, {"unknown_field"}),
    # An IPv6 zone carries any character: it would end net0's gw6/ip6 value and add keys of its own.
    ({"ipv6": {"mode": "static", "ip_cidr": "fd00::5/64", "gateway": "fe80::1%eth0,gw=192.0.2.1"}}, {"ipv6.gateway"}),
    ({"ipv6": {"mode": "static", "ip_cidr": "fe80::5%x,firewall=0/64"}}, {"ipv6.ip_cidr"}),
    ({"ipv6": {"mode": "static", "ip_cidr": "fd00::5/64", "gateway": "fd00::1 "}}, {"ipv6.gateway"}),
    ({"network": {"mode": "static", "ip_cidr": "10.0.0.5/24", "gateway": "10.0.0.1\n"}}, {"network.gateway"}),
    ({"nameserver": "fe80::1%eth0,x=y"}, {"nameserver"}),
    ({"hostname": "web\n"}, {"hostname"}),
]


async def test_invalid_requests_answer_422_with_field_errors(
    user_client: UserClient, registered_node: dict[str, Any], db: async_sessionmaker[AsyncSession]
) -> None:
    for overrides, fields in INVALID:
        body = create_body(**overrides)
        if overrides.get("os_template", "") is None:
            body.pop("os_template")
        response = await user_client.http.post("/api/containers", json=body)
        problem = assert_problem(response, 422)
        reported = {e["field"] for e in problem["errors"]}
        assert fields <= reported or all(f in str(problem["errors"]) for f in fields), (overrides, problem)
    assert await count(db, Container) == 0


async def test_scripts_must_belong_to_the_template(user_client: UserClient, registered_node: dict[str, Any]) -> None:
    template = await make_template(user_client)
    other = await user_client.http.post("/api/templates", json={**TEMPLATE, "name": "other"})
    foreign = other.json()["scripts"][0]["id"]
    response = await user_client.http.post(
        "/api/containers", json=create_body(template_id=template["id"], scripts=[{"id": foreign}])
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"] == [
        {"field": "scripts[0].id", "message": "Not a script of this template.", "code": "invalid"}
    ]


async def test_without_a_node_creation_is_409_no_node_configured(
    user_client: UserClient, db: async_sessionmaker[AsyncSession]
) -> None:
    response = await user_client.http.post("/api/containers", json=create_body())
    assert_problem(response, 409, "no_node_configured")
    assert await count(db, Container) == 0


async def test_a_vmid_taken_on_proxmox_or_reserved_is_409(
    user_client: UserClient, registered_node: dict[str, Any], sim_node: RunningNode
) -> None:
    put_guest(sim_node, 300)
    await user_client.http.post(f"/api/nodes/{registered_node['id']}/vmids/refresh")
    assert_problem(await user_client.http.post("/api/containers", json=create_body(vmid=300)), 409, "vmid_taken")
    await create_container(user_client, vmid=301)
    assert_problem(await user_client.http.post("/api/containers", json=create_body(vmid=301)), 409, "vmid_taken")


async def test_a_guest_the_cache_does_not_know_is_refused_live_before_anything_is_queued(
    user_client: UserClient,
    registered_node: dict[str, Any],
    sim_http: httpx.AsyncClient,
    sim_node: RunningNode,
    stub_broker: StubBroker,
    db: async_sessionmaker[AsyncSession],
) -> None:
    base = f"/api/nodes/{registered_node['id']}/vmids"
    # The cache is warm and does not know the guests made below.
    assert (await user_client.http.get(f"{base}/310")).json() == {"vmid": 310, "available": True}
    made = await sim_http.post(
        "/nodes/pve/lxc", data={"vmid": 310, "ostemplate": DEBIAN, "hostname": "theirs", "storage": "local-lvm"}
    )
    assert made.status_code == 200, made.text
    # A QEMU VM shares the id space (the simulator has no VM create call: placed into its state).
    sim_node.state.guests[311] = SimGuest(vmid=311, type="qemu", config={"name": "vm311"}, status="running")
    assert (await user_client.http.get(f"{base}/310")).json()["available"] is True  # still the stale cache

    for vmid in (310, 311):
        preflight = await user_client.http.post("/api/containers/preflight", json=create_body(vmid=vmid))
        [vmid_check] = [c for c in preflight.json()["checks"] if c["name"] == "vmid"]
        assert vmid_check == {"name": "vmid", "ok": False, "detail": f"VMID {vmid} is taken."}
        problem = assert_problem(
            await user_client.http.post("/api/containers", json=create_body(vmid=vmid)), 409, "vmid_taken"
        )
        assert str(vmid) in problem["detail"]
    assert await count(db, Container) == 0
    assert await count(db, Operation) == 0
    assert sent_jobs(stub_broker) == []

    # The live answer refreshed the cache: the availability check knows now, without asking the node again.
    before = len(sim_node.requests)
    assert (await user_client.http.get(f"{base}/310")).json() == {"vmid": 310, "available": False, "reason": "taken"}
    assert (await user_client.http.get(f"{base}/311")).json()["reason"] == "taken"
    assert len(sim_node.requests) == before
    # A free id chosen by infrahaus skips them too.
    accepted = await create_container(user_client)
    assert accepted["container"]["vmid"] not in (310, 311)


async def test_concurrent_creations_for_one_vmid_accept_exactly_one(
    user_client: UserClient, registered_node: dict[str, Any], db: async_sessionmaker[AsyncSession]
) -> None:
    for round_ in range(20):
        vmid = 400 + round_
        first, second = await asyncio.gather(
            user_client.http.post("/api/containers", json=create_body(hostname=f"a{round_}", vmid=vmid)),
            user_client.http.post("/api/containers", json=create_body(hostname=f"b{round_}", vmid=vmid)),
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [202, 409], (first.text, second.text)
        loser = first if first.status_code == 409 else second
        assert_problem(loser, 409, "vmid_taken")
    assert await count(db, Container) == 20
    assert await count(db, VmidReservation) == 20
    assert await count(db, Operation) == 20


async def test_omitted_vmids_are_allocated_distinctly_under_concurrency(
    user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    responses = await asyncio.gather(
        *(user_client.http.post("/api/containers", json=create_body(hostname=f"n{i}")) for i in range(6))
    )
    assert [r.status_code for r in responses] == [202] * 6, [r.text for r in responses]
    vmids = [r.json()["container"]["vmid"] for r in responses]
    assert len(set(vmids)) == 6


async def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    user_client: UserClient,
    registered_node: dict[str, Any],
    stub_broker: StubBroker,
    db: async_sessionmaker[AsyncSession],
) -> None:
    headers = {"Idempotency-Key": "create-web-1"}
    first = await user_client.http.post("/api/containers", json=create_body(), headers=headers)
    again = await user_client.http.post("/api/containers", json=create_body(), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert await count(db, Container) == 1
    assert len(sent_jobs(stub_broker)) == 1

    other = await user_client.http.post("/api/containers", json=create_body(hostname="web-2"), headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    assert await count(db, Container) == 1

    # The key is per user: another key creates another container.
    fresh = await user_client.http.post(
        "/api/containers", json=create_body(hostname="web-3"), headers={"Idempotency-Key": "k2"}
    )
    assert fresh.status_code == 202
    assert await count(db, Container) == 2


async def test_concurrent_requests_with_one_idempotency_key_create_one_container(
    user_client: UserClient, registered_node: dict[str, Any], db: async_sessionmaker[AsyncSession]
) -> None:
    headers = {"Idempotency-Key": "same"}
    responses = await asyncio.gather(
        *(user_client.http.post("/api/containers", json=create_body(), headers=headers) for _ in range(3))
    )
    accepted = [r for r in responses if r.status_code == 202]
    assert accepted
    assert all(r.status_code in (202, 409) for r in responses)
    assert {r.json()["container"]["id"] for r in accepted} == {accepted[0].json()["container"]["id"]}
    assert await count(db, Container) == 1
