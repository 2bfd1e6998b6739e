"""Users, tickets, CSRF, API tokens (valid, wrong, revoked, privilege-separated) and permission errors."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from infrahaus_proxmox.simulator import RunningNode, SimNodeConfig, SimToken, Simulator, SimulatorConfig
from tests.fixtures.simulator import pinned_context
from tests.integration.simulator.helpers import DEBIAN, create_ct_ok

AUDITOR = "root@pam!auditor"
OPERATOR = "root@pam!operator"


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve")],
        task_duration=0.02,
        users={"root@pam": "demo", "alice@pve": "wonderland", "bob@pve": "builder"},
        tokens={
            "root@pam!infrahaus": SimToken(secret="demo-token-secret"),
            AUDITOR: SimToken(secret="audit", privsep=True, privileges={"/vms": {"VM.Audit"}}),
            OPERATOR: SimToken(
                secret="op",
                privsep=True,
                privileges={
                    "/vms": {"VM.Audit", "VM.Allocate", "VM.PowerMgmt", "VM.Config.Options", "VM.Config.Network"},
                    "/vms/100": {"VM.Config.Disk", "VM.Config.Memory", "VM.Config.CPU"},
                    "/storage": {"Datastore.AllocateSpace", "Datastore.Audit"},
                    "/sdn/zones/localnetwork/vmbr0": {"SDN.Use"},
                },
            ),
        },
        tfa_users={"bob@pve": "123456"},
        user_privileges={"alice@pve": {"/vms/100": {"VM.Audit"}}},
    )


@pytest.fixture
async def anon(sim_node: RunningNode) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{sim_node.api_url}/api2/json", verify=pinned_context(sim_node)) as client:
        yield client


def _token(token_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"PVEAPIToken={token_id}={secret}"}


async def test_no_credentials_is_401_no_ticket(anon: httpx.AsyncClient, sim_node: RunningNode) -> None:
    response = await anon.get("/version")
    assert (response.status_code, response.reason_phrase) == (401, "No ticket")
    assert sim_node.requests[-1].status == 401
    assert sim_node.requests[-1].auth is None


async def test_ticket_login_csrf_and_renewal(anon: httpx.AsyncClient, sim_node: RunningNode) -> None:
    login = await anon.post("/access/ticket", data={"username": "root@pam", "password": "demo"})
    assert login.status_code == 200
    data = login.json()["data"]
    assert data["username"] == "root@pam"
    assert data["ticket"].startswith("PVE:root@pam:")
    assert "NeedTFA" not in data
    assert data["cap"]["vms"]["VM.Allocate"] == 1
    cookies = {"Cookie": f"PVEAuthCookie={data['ticket']}"}
    read = await anon.get("/nodes", headers=cookies)
    assert read.status_code == 200
    assert sim_node.requests[-1].auth == "ticket"
    # Writes need the CSRF token.
    params = {"vmid": "100", "ostemplate": DEBIAN, "rootfs": "local-lvm:4"}
    no_csrf = await anon.post("/nodes/pve/lxc", data=params, headers=cookies)
    assert (no_csrf.status_code, no_csrf.reason_phrase) == (401, "Permission denied - invalid csrf token")
    wrong = await anon.post("/nodes/pve/lxc", data=params, headers=cookies | {"CSRFPreventionToken": "x:y"})
    assert wrong.status_code == 401
    headers = cookies | {"CSRFPreventionToken": data["CSRFPreventionToken"]}
    created = await anon.post("/nodes/pve/lxc", data=params, headers=headers)
    assert created.status_code == 200
    assert ":vzcreate:100:root@pam:" in created.json()["data"]
    # The ticket itself renews the ticket.
    renewed = await anon.post("/access/ticket", data={"username": "root@pam", "password": data["ticket"]})
    assert renewed.status_code == 200
    assert renewed.json()["data"]["ticket"] != data["ticket"]
    # Passwords never land in the request log.
    assert all(r.params.get("password") in (None, "********") for r in sim_node.requests)


async def test_wrong_password_and_unknown_user(anon: httpx.AsyncClient) -> None:
    for user, password in [("root@pam", "nope"), ("mallory@pve", "demo")]:
        response = await anon.post("/access/ticket", data={"username": user, "password": password})
        assert (response.status_code, response.reason_phrase) == (401, "authentication failure")
    realm = await anon.post("/access/ticket", data={"username": "alice", "realm": "pve", "password": "wonderland"})
    assert realm.json()["data"]["username"] == "alice@pve"
    bogus = await anon.get("/nodes", headers={"Cookie": "PVEAuthCookie=PVE:root@pam:65432100::forged"})
    assert (bogus.status_code, bogus.reason_phrase) == (401, "permission denied - invalid PVE ticket")


async def test_second_factor(anon: httpx.AsyncClient) -> None:
    first = (await anon.post("/access/ticket", data={"username": "bob@pve", "password": "builder"})).json()["data"]
    assert first["NeedTFA"] == 1
    assert first["ticket"].startswith("PVE:!tfa!bob@pve:")
    half = await anon.get("/nodes", headers={"Cookie": f"PVEAuthCookie={first['ticket']}"})
    assert half.status_code == 401
    wrong = await anon.post(
        "/access/ticket", data={"username": "bob@pve", "password": "totp:000000", "tfa-challenge": first["ticket"]}
    )
    assert wrong.status_code == 401
    again = (await anon.post("/access/ticket", data={"username": "bob@pve", "password": "builder"})).json()["data"]
    full = await anon.post(
        "/access/ticket", data={"username": "bob@pve", "password": "totp:123456", "tfa-challenge": again["ticket"]}
    )
    assert full.status_code == 200
    assert "NeedTFA" not in full.json()["data"]
    ok = await anon.get("/version", headers={"Cookie": f"PVEAuthCookie={full.json()['data']['ticket']}"})
    assert ok.status_code == 200


async def test_tokens_wrong_unknown_revoked(
    anon: httpx.AsyncClient, simulator_config: SimulatorConfig, sim_node: RunningNode
) -> None:
    good = await anon.get("/version", headers=_token("root@pam!infrahaus", "demo-token-secret"))
    assert good.status_code == 200
    assert sim_node.requests[-1].auth == "token"
    wrong = await anon.get("/version", headers=_token("root@pam!infrahaus", "guess"))
    assert (wrong.status_code, wrong.reason_phrase) == (401, "invalid token value!")
    unknown = await anon.get("/version", headers=_token("root@pam!ghost", "x"))
    assert (unknown.status_code, unknown.reason_phrase) == (401, "no such token 'ghost' for user 'root@pam'")
    simulator_config.tokens["root@pam!infrahaus"].revoked = True
    revoked = await anon.get("/version", headers=_token("root@pam!infrahaus", "demo-token-secret"))
    assert revoked.status_code == 401


async def test_permissions_of_tokens(anon: httpx.AsyncClient) -> None:
    full = (await anon.get("/access/permissions", headers=_token("root@pam!infrahaus", "demo-token-secret"))).json()
    assert full["data"]["/"]["VM.Allocate"] == 1
    assert full["data"]["/"]["Sys.Modify"] == 1
    audit = (await anon.get("/access/permissions", headers=_token(AUDITOR, "audit"))).json()["data"]
    assert audit == {"/vms": {"VM.Audit": 1}}
    at_path = await anon.get("/access/permissions", params={"path": "/vms/100"}, headers=_token(OPERATOR, "op"))
    privs = at_path.json()["data"]["/vms/100"]
    assert privs["VM.Config.Disk"] == 1
    assert privs["VM.Allocate"] == 1
    assert "Sys.Audit" not in privs


async def test_privilege_separated_token_gets_403(anon: httpx.AsyncClient) -> None:
    headers = _token(AUDITOR, "audit")
    create = await anon.post(
        "/nodes/pve/lxc", data={"vmid": "100", "ostemplate": DEBIAN, "rootfs": "local-lvm:4"}, headers=headers
    )
    assert (create.status_code, create.reason_phrase) == (403, "Permission check failed (/vms/100, VM.Allocate)")
    status = await anon.get("/nodes/pve/status", headers=headers)
    assert (status.status_code, status.reason_phrase) == (403, "Permission check failed (/nodes/pve, Sys.Audit)")
    # Lists are filtered, not refused.
    assert (await anon.get("/nodes/pve/storage", headers=headers)).json()["data"] == []


async def test_root_only_feature_flags(anon: httpx.AsyncClient) -> None:
    op = _token(OPERATOR, "op")
    base = {"vmid": "100", "ostemplate": DEBIAN, "rootfs": "local-lvm:4", "net0": "name=eth0,bridge=vmbr0,ip=dhcp"}
    keyctl = await anon.post(
        "/nodes/pve/lxc", data=base | {"unprivileged": "1", "features": "nesting=1,keyctl=1"}, headers=op
    )
    assert keyctl.status_code == 403
    assert keyctl.reason_phrase == (
        "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
    )
    privileged = await anon.post("/nodes/pve/lxc", data=base | {"features": "nesting=1"}, headers=op)
    assert privileged.reason_phrase == (
        "Permission check failed (changing feature flags for privileged container is only allowed for root@pam)"
    )
    nesting = await anon.post("/nodes/pve/lxc", data=base | {"unprivileged": "1", "features": "nesting=1"}, headers=op)
    assert nesting.status_code == 200, nesting.reason_phrase
    # The demo token is a token too: it is not root@pam.
    demo = _token("root@pam!infrahaus", "demo-token-secret")
    refused = await anon.post(
        "/nodes/pve/lxc", data=base | {"vmid": "101", "unprivileged": "1", "features": "keyctl=1"}, headers=demo
    )
    assert refused.status_code == 403
    update = await anon.put("/nodes/pve/lxc/100/config", data={"features": "nesting=1,fuse=1"}, headers=op)
    assert (update.status_code, update.reason_phrase) == (403, keyctl.reason_phrase)


async def test_root_ticket_may_set_any_feature(anon: httpx.AsyncClient) -> None:
    data = (await anon.post("/access/ticket", data={"username": "root@pam", "password": "demo"})).json()["data"]
    anon.headers["Cookie"] = f"PVEAuthCookie={data['ticket']}"
    anon.headers["CSRFPreventionToken"] = data["CSRFPreventionToken"]
    await create_ct_ok(anon, 120, features="nesting=1,keyctl=1,fuse=1")
    config = (await anon.get("/nodes/pve/lxc/120/config")).json()["data"]
    assert config["features"] == "fuse=1,keyctl=1,nesting=1"


async def test_user_acl_limits_visibility(anon: httpx.AsyncClient, sim_node: RunningNode) -> None:
    from infrahaus_proxmox.simulator.simulator import populate_node

    populate_node(sim_node.state, ("local:vztmpl/a.tar.zst",), guests=3)
    data = (await anon.post("/access/ticket", data={"username": "alice@pve", "password": "wonderland"})).json()["data"]
    cookies = {"Cookie": f"PVEAuthCookie={data['ticket']}"}
    listed = (await anon.get("/nodes/pve/lxc", headers=cookies)).json()["data"]
    assert [c["vmid"] for c in listed] == [100]
    denied = await anon.get("/nodes/pve/lxc/101/config", headers=cookies)
    assert (denied.status_code, denied.reason_phrase) == (403, "Permission check failed (/vms/101, VM.Audit)")


async def test_expired_tickets_need_a_new_login(anon: httpx.AsyncClient, simulator: Simulator) -> None:
    assert (await anon.get("/access/ticket")).json() == {"data": None}
    data = (await anon.post("/access/ticket", data={"username": "root@pam", "password": "demo"})).json()["data"]
    cookie = {"Cookie": f"PVEAuthCookie={data['ticket']}"}
    assert (await anon.get("/version", headers=cookie)).status_code == 200
    simulator.access.expire_tickets()
    assert (await anon.get("/version", headers=cookie)).status_code == 401
    renewal = await anon.post("/access/ticket", data={"username": "root@pam", "password": data["ticket"]})
    assert renewal.status_code == 401


async def test_bridges_need_sdn_use(anon: httpx.AsyncClient) -> None:
    op = _token(OPERATOR, "op")
    base = {"vmid": "100", "ostemplate": DEBIAN, "rootfs": "local-lvm:4", "unprivileged": "1"}
    other = await anon.post("/nodes/pve/lxc", data=base | {"net0": "name=eth0,bridge=vmbr1,ip=dhcp"}, headers=op)
    assert (other.status_code, other.reason_phrase) == (
        403,
        "Permission check failed (/sdn/zones/localnetwork/vmbr1, SDN.Use)",
    )
    allowed = await anon.post("/nodes/pve/lxc", data=base | {"net0": "name=eth0,bridge=vmbr0,ip=dhcp"}, headers=op)
    assert allowed.status_code == 200
