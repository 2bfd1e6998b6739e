"""ProxmoxClient authentication and TLS against the simulator, over real sockets."""

import asyncio
import time
from pathlib import Path

import pytest

from infrahaus_domain.errors import AuthenticationFailed
from infrahaus_domain.settings import AuthServer
from infrahaus_domain.users.service import verify_proxmox_login
from infrahaus_proxmox import (
    LxcCreate,
    ProxmoxAuthError,
    ProxmoxPermissionError,
    ProxmoxTfaRequired,
    ProxmoxTlsError,
    TicketAuth,
    TlsPolicy,
    TokenAuth,
    fetch_certificate,
)
from infrahaus_pvesim import RunningNode, SimToken, Simulator, SimulatorConfig
from infrahaus_pvesim.config import DEMO_OSTEMPLATE, DEMO_PASSWORD, DEMO_TOKEN_ID, DEMO_USER
from tests.fixtures.proxmox_client import ClientFactory

WRONG_FINGERPRINT = ":".join(["AA"] * 32)


def _api(sim_node: RunningNode) -> list[tuple[str, str, int, str | None]]:
    return [(r.method, r.path.removeprefix("/api2/json"), r.status, r.auth) for r in sim_node.requests]


async def test_token_auth(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    version = await pve_client().version()
    assert version.version.startswith("8.")
    assert version.release
    assert _api(sim_node) == [("GET", "/version", 200, "token")]


async def test_ticket_auth_logs_in_lazily_and_sends_csrf_on_writes(
    pve_client: ClientFactory, sim_node: RunningNode
) -> None:
    client = pve_client(TicketAuth(DEMO_USER, DEMO_PASSWORD))
    assert sim_node.requests == []
    nodes = await client.nodes.list()
    assert [n.node for n in nodes] == ["pve"]
    # A write: the simulator answers 401 "invalid csrf token" unless the header is right.
    upid = await client.lxc.create("pve", _minimal_create(150))
    status = await client.tasks.wait(upid, timeout=10)
    assert status.succeeded
    log = _api(sim_node)
    assert log[0] == ("POST", "/access/ticket", 200, None)
    assert log[1] == ("GET", "/nodes", 200, "ticket")
    assert log[2] == ("POST", "/nodes/pve/lxc", 200, "ticket")
    assert sum(1 for entry in log if entry[1] == "/access/ticket") == 1
    # The password is never logged by the simulator either; the client sent it only to /access/ticket.
    assert all("password" not in r.params or r.params["password"] == "********" for r in sim_node.requests)


async def test_concurrent_requests_share_one_login(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client(TicketAuth(DEMO_USER, DEMO_PASSWORD))
    versions = await asyncio.gather(*(client.version() for _ in range(8)))
    assert len({v.version for v in versions}) == 1
    assert [p for _m, p, _s, _a in _api(sim_node)].count("/access/ticket") == 1
    assert [p for _m, p, _s, _a in _api(sim_node)].count("/version") == 8


async def test_ticket_is_renewed_before_expiry(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client(TicketAuth(DEMO_USER, DEMO_PASSWORD, renew_after=0.0))
    await client.version()
    await client.version()
    assert [p for _m, p, _s, _a in _api(sim_node)] == ["/access/ticket", "/version", "/access/ticket", "/version"]


async def test_ticket_renewed_once_on_401(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client(TicketAuth(DEMO_USER, DEMO_PASSWORD))
    await client.version()
    sim_node.faults.fail_http(401, times=1, path_contains="/nodes", reason="permission denied - invalid PVE ticket")
    await client.nodes.list()
    assert [(p, s) for _m, p, s, _a in _api(sim_node)] == [
        ("/access/ticket", 200),
        ("/version", 200),
        ("/nodes", 401),
        ("/access/ticket", 200),
        ("/nodes", 200),
    ]
    # A second 401 in a row is not papered over.
    sim_node.faults.fail_http(401, times=2, path_contains="/nodes", reason="permission denied - invalid PVE ticket")
    with pytest.raises(ProxmoxAuthError, match="invalid PVE ticket"):
        await client.nodes.list()


async def test_wrong_password(pve_client: ClientFactory) -> None:
    client = pve_client(TicketAuth(DEMO_USER, "not-the-password-123"))
    with pytest.raises(ProxmoxAuthError, match="authentication failure") as caught:
        await client.version()
    assert "not-the-password-123" not in str(caught.value)
    anonymous = pve_client(anonymous=True)
    with pytest.raises(ProxmoxAuthError):
        await anonymous.access.ticket(DEMO_USER, "not-the-password-123")


async def test_access_ticket_and_tfa(pve_client: ClientFactory, simulator: Simulator) -> None:
    client = pve_client(anonymous=True)
    ticket = await client.access.ticket("root", DEMO_PASSWORD, realm="pam")
    assert ticket.username == DEMO_USER
    assert ticket.ticket.startswith("PVE:root@pam:")
    assert ticket.csrf_token
    assert ticket.ticket not in repr(ticket)
    simulator.config.tfa_users[DEMO_USER] = "123456"
    with pytest.raises(ProxmoxTfaRequired):
        await client.access.ticket(DEMO_USER, DEMO_PASSWORD)


async def test_wrong_token_secret(pve_client: ClientFactory) -> None:
    client = pve_client(TokenAuth(DEMO_TOKEN_ID, "wrong-secret-0000"))
    with pytest.raises(ProxmoxAuthError) as caught:
        await client.nodes.list()
    assert caught.value.status == 401
    assert "wrong-secret-0000" not in str(caught.value)
    assert "wrong-secret-0000" not in repr(client)


async def test_revoked_token(pve_client: ClientFactory, simulator: Simulator) -> None:
    client = pve_client()
    await client.version()
    simulator.config.tokens[DEMO_TOKEN_ID].revoked = True
    with pytest.raises(ProxmoxAuthError, match="Authentication failed!"):
        await client.version()


async def test_permission_denied_for_separated_token(pve_client: ClientFactory, simulator: Simulator) -> None:
    simulator.config.tokens["root@pam!readonly"] = SimToken(secret="ro-secret", privsep=True, privileges={})
    client = pve_client(TokenAuth("root@pam!readonly", "ro-secret"))
    with pytest.raises(ProxmoxPermissionError, match=r"Permission check failed \(/nodes/pve, Sys.Audit\)") as caught:
        await client.nodes.status("pve")
    assert caught.value.status == 403
    permissions = await client.access.permissions("/vms/100")
    assert permissions == {"/vms/100": {}}
    root = await pve_client().access.permissions("/vms/100")
    assert root["/vms/100"]["VM.Allocate"] is True


async def test_fetch_certificate(sim_node: RunningNode) -> None:
    info = await fetch_certificate("127.0.0.1", sim_node.api_port)
    assert info.fingerprint_sha256 == sim_node.fingerprint
    assert "PVE Cluster Node" in info.subject
    assert info.not_before < info.not_after
    assert info.pem.strip() == sim_node.certificate_pem.strip()
    # The probe is a bare handshake: the API saw no request.
    assert sim_node.requests == []


async def test_pinned_fingerprint_mismatch_sends_nothing(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client(tls=TlsPolicy.pinned(WRONG_FINGERPRINT))
    with pytest.raises(ProxmoxTlsError, match="expected the pinned") as caught:
        await client.nodes.list()
    assert sim_node.fingerprint in str(caught.value)
    assert sim_node.requests == []
    # The mismatch is not cached as trust: the next call checks again and fails again.
    with pytest.raises(ProxmoxTlsError):
        await client.version()
    assert sim_node.requests == []


async def test_pinned_fingerprint_in_another_notation(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    pin = sim_node.fingerprint.replace(":", "").lower()
    assert (await pve_client(tls=TlsPolicy.pinned(pin)).version()).version


async def test_verified_policy_refuses_self_signed_node(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    client = pve_client(tls=TlsPolicy.verified(), retries=0)
    with pytest.raises(ProxmoxTlsError, match="TLS verification"):
        await client.version()
    assert sim_node.requests == []


async def test_verified_policy_with_cluster_ca(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    ca_pem = sim_node.certificate.ca_path.read_text()
    assert (await pve_client(tls=TlsPolicy.verified(ca_pem=ca_pem)).version()).version


async def test_insecure_policy_is_explicit_opt_out(pve_client: ClientFactory, sim_node: RunningNode) -> None:
    assert (await pve_client(tls=TlsPolicy.insecure()).version()).version
    assert _api(sim_node) == [("GET", "/version", 200, "token")]


def _minimal_create(vmid: int) -> LxcCreate:
    return LxcCreate(vmid=vmid, ostemplate=DEMO_OSTEMPLATE, rootfs="local-lvm:4", hostname=f"ct-{vmid}")


async def test_a_wrong_password_waits_out_proxmoxs_delay_and_is_still_a_wrong_password(tmp_path: Path) -> None:
    # pveproxy holds every 401 until 3 s after the request began: the login check must not take that for an
    # unreachable auth server.
    config = SimulatorConfig(data_dir=tmp_path / "slow-401", auth_failure_delay=3.0)
    async with Simulator(config) as sim:
        node = sim.node()
        server = AuthServer(name="pve", url=node.api_url, fingerprint=node.fingerprint)
        started = time.monotonic()
        with pytest.raises(AuthenticationFailed):
            await verify_proxmox_login(server, "root@pam", "not-the-password")
        assert time.monotonic() - started >= 3.0
        assert await verify_proxmox_login(server, "root@pam", "demo") == "root@pam"


async def test_a_user_account_enabled_disabled_expired_or_deleted(
    pve_client: ClientFactory, simulator: Simulator
) -> None:
    simulator.config.users["alice@pve"] = "wonderland"
    simulator.config.tokens["root@pam!accounts"] = SimToken(
        secret="acc", privsep=True, privileges={"/access/groups": {"Sys.Audit"}}
    )
    accounts = pve_client(TokenAuth("root@pam!accounts", "acc"))
    alice = await accounts.access.user("alice@pve")
    assert alice is not None
    assert (alice.enable, alice.expire, alice.active(time.time())) == (True, 0, True)

    simulator.access.set_user_enabled("alice@pve", False)
    disabled = await accounts.access.user("alice@pve")
    assert disabled is not None
    assert not disabled.active(time.time())

    simulator.access.set_user_enabled("alice@pve", True)
    simulator.config.user_expire["alice@pve"] = int(time.time()) - 1
    expired = await accounts.access.user("alice@pve")
    assert expired is not None
    assert expired.enable
    assert not expired.active(time.time())

    simulator.access.delete_user("alice@pve")
    assert await accounts.access.user("alice@pve") is None  # 403 "no such user" through the permission check
    assert await pve_client(TicketAuth(DEMO_USER, DEMO_PASSWORD)).access.user("alice@pve") is None  # root: 500

    simulator.config.tokens["root@pam!readonly"] = SimToken(secret="ro", privsep=True, privileges={})
    with pytest.raises(ProxmoxPermissionError, match="Permission check failed"):
        await pve_client(TokenAuth("root@pam!readonly", "ro")).access.user("root@pam")
    with pytest.raises(ValueError, match="invalid userid"):
        await accounts.access.user("../nodes")
