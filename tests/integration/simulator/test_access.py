"""Users, tickets, CSRF, API tokens (valid, wrong, revoked, privilege-separated) and permission errors."""

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from infrahaus_pvesim import RunningNode, SimAcl, SimNodeConfig, SimToken, Simulator, SimulatorConfig
from infrahaus_pvesim.state import SimBridge
from tests.fixtures.simulator import pinned_context
from tests.integration.simulator.helpers import DEBIAN, create_ct_ok, wait_task

AUDITOR = "root@pam!auditor"
OPERATOR = "root@pam!operator"


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
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
                    "/vms": {
                        "VM.Audit",
                        "VM.Allocate",
                        "VM.PowerMgmt",
                        "VM.Config.Options",
                        "VM.Config.Network",
                        "VM.Config.Disk",
                        "VM.Config.Memory",
                        "VM.Config.CPU",
                    },
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
    # pveproxy tells nothing more about a bad ticket or token (the detail goes to syslog only).
    assert (bogus.status_code, bogus.reason_phrase) == (401, "Authentication failed!")


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
    assert (wrong.status_code, wrong.reason_phrase) == (401, "Authentication failed!")
    unknown = await anon.get("/version", headers=_token("root@pam!ghost", "x"))
    assert (unknown.status_code, unknown.reason_phrase) == (401, "Authentication failed!")
    simulator_config.tokens["root@pam!infrahaus"].revoked = True
    revoked = await anon.get("/version", headers=_token("root@pam!infrahaus", "demo-token-secret"))
    assert revoked.status_code == 401


async def test_permissions_of_tokens(anon: httpx.AsyncClient) -> None:
    full = (await anon.get("/access/permissions", headers=_token("root@pam!infrahaus", "demo-token-secret"))).json()
    assert full["data"]["/"]["VM.Allocate"] == 1
    assert full["data"]["/"]["Sys.Modify"] == 1
    audit = (await anon.get("/access/permissions", headers=_token(AUDITOR, "audit"))).json()["data"]
    # Every path somebody has an ACL on is listed (alice's /vms/100 too) where the caller holds something.
    assert audit == {"/vms": {"VM.Audit": 1}, "/vms/100": {"VM.Audit": 1}}
    at_path = await anon.get("/access/permissions", params={"path": "/vms/100"}, headers=_token(OPERATOR, "op"))
    privs = at_path.json()["data"]["/vms/100"]
    assert privs["VM.Config.Disk"] == 1
    assert privs["VM.Allocate"] == 1
    assert "Sys.Audit" not in privs
    # Without a path: the default top-level paths and every ACL path, only where something is held.
    listed = (await anon.get("/access/permissions", headers=_token(OPERATOR, "op"))).json()["data"]
    assert set(listed) == {"/vms", "/vms/100", "/storage", "/sdn/zones/localnetwork/vmbr0"}
    # A path nobody has an ACL on answers an empty set.
    none = await anon.get("/access/permissions", params={"path": "/nodes/pve"}, headers=_token(OPERATOR, "op"))
    assert none.json()["data"] == {"/nodes/pve": {}}


async def test_privilege_separated_token_gets_403(anon: httpx.AsyncClient) -> None:
    headers = _token(AUDITOR, "audit")
    create = await anon.post(
        "/nodes/pve/lxc", data={"vmid": "100", "ostemplate": DEBIAN, "rootfs": "local-lvm:4"}, headers=headers
    )
    # create_vm raises a bare permission error for VM.Allocate (no path, no privilege named).
    assert (create.status_code, create.reason_phrase) == (403, "Permission check failed")
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
    assert (await wait_task(anon, nesting.json()["data"], headers=op))["exitstatus"] == "OK"
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
    from infrahaus_pvesim.simulator import populate_node

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


async def _permissions(client: httpx.AsyncClient, userid: str, path: str | None = None) -> dict[str, dict[str, int]]:
    params = {"userid": userid} | ({"path": path} if path else {})
    response = await client.get(
        "/access/permissions", params=params, headers=_token("root@pam!infrahaus", "demo-token-secret")
    )
    assert response.status_code == 200, response.reason_phrase
    data: dict[str, dict[str, int]] = response.json()["data"]
    return data


async def test_the_deepest_acl_replaces_what_is_inherited(
    anon: httpx.AsyncClient, simulator_config: SimulatorConfig
) -> None:
    simulator_config.users["dave@pve"] = "dave-pw"
    simulator_config.groups["ops"] = {"dave@pve"}
    simulator_config.acls += [
        SimAcl("/vms", ("PVEVMAdmin",), users=("dave@pve",)),
        SimAcl("/vms/200", ("PVEAuditor",), users=("dave@pve",)),
        SimAcl("/vms/300", ("NoAccess",), users=("dave@pve",)),
        SimAcl("/storage", ("PVEDatastoreUser",), users=("dave@pve",), propagate=False),
        SimAcl("/nodes", ("PVEAuditor",), groups=("ops",)),
        SimAcl("/nodes/pve", ("PVESysAdmin",), groups=("ops",)),
        SimAcl("/nodes/pve", ("PVEAuditor",), users=("dave@pve",)),
    ]
    on_201 = (await _permissions(anon, "dave@pve", "/vms/201"))["/vms/201"]
    assert on_201["VM.Allocate"] == 1
    assert on_201["VM.PowerMgmt"] == 1
    # An ACL on the guest itself replaces the inherited role, it does not add to it.
    on_200 = (await _permissions(anon, "dave@pve", "/vms/200"))["/vms/200"]
    assert "VM.Audit" in on_200
    assert "VM.Allocate" not in on_200
    assert await _permissions(anon, "dave@pve", "/vms/300") == {"/vms/300": {}}
    # propagate=0 holds on the path itself only, and says so with a 0.
    assert (await _permissions(anon, "dave@pve", "/storage"))["/storage"]["Datastore.AllocateSpace"] == 0
    assert await _permissions(anon, "dave@pve", "/storage/local") == {"/storage/local": {}}
    # A group's ACL applies where the user has none of their own; the user's own ACL beats the group's.
    assert "Sys.Audit" in (await _permissions(anon, "dave@pve", "/nodes/other"))["/nodes/other"]
    assert "Sys.Console" not in (await _permissions(anon, "dave@pve", "/nodes/pve"))["/nodes/pve"]
    listed = await _permissions(anon, "dave@pve")
    assert {"/vms", "/vms/200", "/storage", "/nodes", "/nodes/pve"} <= set(listed)
    assert "/vms/300" not in listed


async def test_a_separated_token_holds_only_what_its_user_holds_too(
    anon: httpx.AsyncClient, simulator_config: SimulatorConfig
) -> None:
    simulator_config.users["erin@pve"] = "erin-pw"
    simulator_config.tokens["erin@pve!ci"] = SimToken(secret="ci-secret", privsep=True)
    simulator_config.tokens["erin@pve!full"] = SimToken(secret="full-secret", privsep=False)
    simulator_config.acls += [
        SimAcl("/storage", ("PVEDatastoreUser",), users=("erin@pve",)),
        SimAcl("/vms", ("PVEVMAdmin",), tokens=("erin@pve!ci",)),
        SimAcl("/storage", ("PVEDatastoreAdmin",), tokens=("erin@pve!ci",)),
    ]
    assert await _permissions(anon, "erin@pve!ci", "/vms/100") == {"/vms/100": {}}
    storage = (await _permissions(anon, "erin@pve!ci", "/storage/local"))["/storage/local"]
    assert storage == {"Datastore.AllocateSpace": 1, "Datastore.Audit": 1}
    # Without separation a token is its user.
    assert (
        await _permissions(anon, "erin@pve!full", "/storage/local")
        == await _permissions(anon, "erin@pve", "/storage/local")
        != {"/storage/local": {}}
    )
    # Asking for somebody else's privileges needs Sys.Audit on /access; one's own tokens are fine.
    other = await anon.get("/access/permissions", params={"userid": "erin@pve"}, headers=_token(AUDITOR, "audit"))
    assert (other.status_code, other.reason_phrase) == (403, "Permission check failed (/access, Sys.Audit)")
    login = (await anon.post("/access/ticket", data={"username": "erin@pve", "password": "erin-pw"})).json()["data"]
    own = await anon.get(
        "/access/permissions",
        params={"userid": "erin@pve!ci", "path": "/storage"},
        headers={"Cookie": f"PVEAuthCookie={login['ticket']}"},
    )
    assert own.json()["data"] == {"/storage": {"Datastore.AllocateSpace": 1, "Datastore.Audit": 1}}


async def test_bridges_without_sdn_privileges_are_hidden(
    anon: httpx.AsyncClient, sim_node: RunningNode, simulator_config: SimulatorConfig
) -> None:
    sim_node.state.bridges["vmbr1"] = SimBridge(iface="vmbr1")
    sim_node.state.bridges["vmbr2"] = SimBridge(iface="vmbr2")
    simulator_config.tokens["root@pam!vlan"] = SimToken(secret="v", privsep=True)
    simulator_config.acls.append(SimAcl("/sdn/zones/localnetwork/vmbr2/10", ("PVESDNUser",), tokens=("root@pam!vlan",)))

    async def bridges(token: str, secret: str) -> list[str]:
        answer = await anon.get("/nodes/pve/network", params={"type": "bridge"}, headers=_token(token, secret))
        return [i["iface"] for i in answer.json()["data"]]

    assert await bridges("root@pam!infrahaus", "demo-token-secret") == ["vmbr0", "vmbr1", "vmbr2"]
    assert await bridges(OPERATOR, "op") == ["vmbr0"]
    assert await bridges(AUDITOR, "audit") == []
    # SDN.Use on one VLAN of a bridge is enough to see the bridge.
    assert await bridges("root@pam!vlan", "v") == ["vmbr2"]


async def test_node_and_cluster_reads_follow_sys_audit(anon: httpx.AsyncClient) -> None:
    status = await anon.get("/cluster/status", headers=_token(AUDITOR, "audit"))
    assert (status.status_code, status.reason_phrase) == (403, "Permission check failed (/, Sys.Audit)")
    nodes = (await anon.get("/nodes", headers=_token(AUDITOR, "audit"))).json()["data"]
    assert [n["node"] for n in nodes] == ["pve"]
    assert "maxmem" not in nodes[0]
    assert nodes[0]["ssl_fingerprint"]
    resources = (await anon.get("/cluster/resources", headers=_token(AUDITOR, "audit"))).json()["data"]
    assert [r["id"] for r in resources] == ["node/pve"]
    assert "maxmem" not in resources[0]
    full = (await anon.get("/nodes", headers=_token("root@pam!infrahaus", "demo-token-secret"))).json()["data"]
    assert full[0]["maxmem"] > 0


async def test_every_401_is_held_for_the_configured_delay(tmp_path: Path) -> None:
    config = SimulatorConfig(data_dir=tmp_path / "delayed", auth_failure_delay=0.3)
    async with Simulator(config) as sim:
        node = sim.node()
        async with httpx.AsyncClient(base_url=f"{node.api_url}/api2/json", verify=pinned_context(node)) as client:
            for request in (
                client.post("/access/ticket", data={"username": "root@pam", "password": "wrong"}),
                client.get("/version", headers=_token("root@pam!infrahaus", "wrong")),
                client.get("/version"),
            ):
                started = time.monotonic()
                response = await request
                assert response.status_code == 401
                assert time.monotonic() - started >= 0.3


async def test_reading_a_user_account_answers_like_proxmox(anon: httpx.AsyncClient, simulator: Simulator) -> None:
    """GET /access/users/{userid}: enable/expire as integers; a missing user is 403 "no such user" for anyone but
    root@pam (the permission check looks it up first) and 500 for root@pam (read_user's own check)."""
    simulator.config.tokens["root@pam!accounts"] = SimToken(
        secret="acc", privsep=True, privileges={"/access/groups": {"Sys.Audit"}}
    )
    accounts = _token("root@pam!accounts", "acc")
    read = await anon.get("/access/users/alice@pve", headers=accounts)
    assert read.status_code == 200, read.text
    assert read.json()["data"] == {"enable": 1, "expire": 0, "groups": [], "tokens": {}}

    simulator.access.set_user_enabled("alice@pve", False)
    simulator.config.user_expire["bob@pve"] = 1_700_000_000
    assert (await anon.get("/access/users/alice@pve", headers=accounts)).json()["data"]["enable"] == 0
    assert (await anon.get("/access/users/bob@pve", headers=accounts)).json()["data"]["expire"] == 1_700_000_000

    missing = await anon.get("/access/users/ghost@pve", headers=accounts)
    assert (missing.status_code, missing.reason_phrase) == (403, "no such user ('ghost@pve')")
    assert missing.json() == {"data": None, "message": "no such user ('ghost@pve')\n"}
    login = await anon.post("/access/ticket", data={"username": "root@pam", "password": "demo"})
    root = {"Cookie": f"PVEAuthCookie={login.json()['data']['ticket']}"}
    as_root = await anon.get("/access/users/ghost@pve", headers=root)
    assert (as_root.status_code, as_root.reason_phrase) == (500, "no such user ('ghost@pve')")
    assert (await anon.get("/access/users/alice@pve", headers=root)).json()["data"]["enable"] == 0

    # Without User.Modify or Sys.Audit on /access/groups (or a group of the user): refused, the user existing.
    unprivileged = await anon.get("/access/users/alice@pve", headers=_token(AUDITOR, "audit"))
    assert (unprivileged.status_code, unprivileged.reason_phrase) == (403, "Permission check failed")
    simulator.config.groups["staff"] = {"alice@pve"}
    simulator.config.tokens[AUDITOR].privileges["/access/groups/staff"] = {"User.Modify"}
    assert (await anon.get("/access/users/alice@pve", headers=_token(AUDITOR, "audit"))).status_code == 200
    assert (await anon.get("/access/users/bob@pve", headers=_token(AUDITOR, "audit"))).status_code == 403


async def test_a_disabled_expired_or_deleted_account_can_neither_log_in_nor_use_its_tokens(
    anon: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.config.tokens["alice@pve!ci"] = SimToken(secret="alice-token")
    alice = _token("alice@pve!ci", "alice-token")
    credentials = {"username": "alice@pve", "password": "wonderland"}
    assert (await anon.post("/access/ticket", data=credentials)).status_code == 200
    assert (await anon.get("/version", headers=alice)).status_code == 200

    simulator.access.set_user_enabled("alice@pve", False)
    refused = await anon.post("/access/ticket", data=credentials)
    assert (refused.status_code, refused.reason_phrase) == (401, "authentication failure")
    assert (await anon.get("/version", headers=alice)).status_code == 401
    simulator.access.set_user_enabled("alice@pve", True)
    assert (await anon.post("/access/ticket", data=credentials)).status_code == 200

    simulator.config.user_expire["alice@pve"] = int(time.time()) - 60
    assert (await anon.post("/access/ticket", data=credentials)).status_code == 401
    assert (await anon.get("/version", headers=alice)).status_code == 401
    del simulator.config.user_expire["alice@pve"]

    simulator.access.delete_user("alice@pve")
    assert (await anon.post("/access/ticket", data=credentials)).status_code == 401
    assert (await anon.get("/version", headers=alice)).status_code == 401
    assert "alice@pve!ci" not in simulator.config.tokens
