"""The outbound policy on the wire (loopback only): connections go to the address that was checked, servers that
are not Proxmox nodes are named so without repeating what they said, and node checks are limited per user."""

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from infrahaus_domain.crypto import SecretBox, generate_key
from infrahaus_domain.nodes.connection import NodeAccess
from infrahaus_domain.outbound import OutboundDeniedError, OutboundPolicy, Rules
from infrahaus_domain.settings import Settings
from infrahaus_proxmox import ProxmoxClient, TlsPolicy, TokenAuth
from infrahaus_proxmox.errors import ProxmoxTlsError
from infrahaus_pvesim import RunningNode
from infrahaus_pvesim.config import DEMO_TOKEN_ID, DEMO_TOKEN_SECRET
from infrahaus_pvesim.tls import ensure_node_certificate, server_context
from tests.fixtures.api import LOOPBACK, UserClient, assert_problem

BANNER = "SecretBanner-7.4-internal"


def access_with(lookup: Callable[[str, int], Awaitable[list[str]]]) -> NodeAccess:
    return NodeAccess(SecretBox([generate_key("t")]), OutboundPolicy(allow=Rules.parse(LOOPBACK), lookup=lookup))


async def test_the_client_connects_to_the_checked_address_and_verifies_the_name(sim_node: RunningNode) -> None:
    """`pve` (a name in the node certificate) resolves once, to loopback; a later answer (rebinding to the metadata
    address) is never used. TLS is verified against the name, not the address connected to."""
    answers = [["127.0.0.1"], ["169.254.169.254"]]
    asked: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    access = access_with(lookup)
    ca = sim_node.certificate.ca_path.read_text()
    client = ProxmoxClient(
        f"https://pve:{sim_node.api_port}",
        TokenAuth(DEMO_TOKEN_ID, DEMO_TOKEN_SECRET),
        tls=TlsPolicy.verified(ca),
        resolver=access.resolve_api,
    )
    async with client:
        for _ in range(3):
            assert (await client.version()).version
    assert asked == ["pve"]
    # The next client asks again, and the rebound answer is refused before anything is sent.
    async with ProxmoxClient(
        f"https://pve:{sim_node.api_port}", None, tls=TlsPolicy.verified(ca), resolver=access.resolve_api
    ) as rebound:
        with pytest.raises(OutboundDeniedError):
            await rebound.version()

    # A name the certificate does not carry fails verification although the address is the node's.
    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with ProxmoxClient(
        f"https://evil.test:{sim_node.api_port}",
        TokenAuth(DEMO_TOKEN_ID, DEMO_TOKEN_SECRET),
        tls=TlsPolicy.verified(ca),
        resolver=access_with(loopback).resolve_api,
    ) as wrong_name:
        with pytest.raises(ProxmoxTlsError):
            await wrong_name.version()


async def test_ssh_connects_to_the_checked_address(sim_node: RunningNode) -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "pve-ssh.test" else []

    access = access_with(lookup)
    from infrahaus_domain.nodes.connection import NodeEndpoint

    endpoint = NodeEndpoint(
        host="127.0.0.1",
        port=sim_node.api_port,
        pve_node="pve",
        token_id=DEMO_TOKEN_ID,
        token_secret=DEMO_TOKEN_SECRET,
        tls_verify=True,
        tls_fingerprint=sim_node.fingerprint,
        ssh_host="pve-ssh.test",
        ssh_port=sim_node.ssh_port,
        ssh_username="root",
        ssh_password="demo",
    )
    runner = access.runner(endpoint)
    try:
        assert (await runner.connect()).startswith("ssh-")
    finally:
        await runner.aclose()


# ---------------------------------------------------------------- servers that are not Proxmox nodes


async def _serve(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], **tls: Any) -> Any:
    return await asyncio.start_server(handler, "127.0.0.1", 0, **tls)


@pytest.fixture
async def banner_port() -> AsyncIterator[int]:
    """A TCP service that greets with a banner (an FTP or mail server on a port a user typed in)."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"220 {BANNER} ready\r\n".encode())
        await writer.drain()
        await reader.read(65536)
        writer.close()

    server = await _serve(greet)
    async with server:
        yield server.sockets[0].getsockname()[1]


class FakeHttps:
    """An HTTPS server that is not Proxmox: every request gets `answer` (its banner in the reason and body)."""

    def __init__(self, tmp_path: Path) -> None:
        self.certificate = ensure_node_certificate(tmp_path / "fake", "fake", ["127.0.0.1"])
        self.answer = f"HTTP/1.1 403 Forbidden {BANNER}\r\nContent-Type: text/html\r\n"
        self.body = f"<html><title>{BANNER}</title></html>"
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = self.body.encode()
            writer.write(f"{self.answer}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def fake_https(tmp_path: Path) -> AsyncIterator[FakeHttps]:
    fake = FakeHttps(tmp_path)
    server = await _serve(fake.handle, ssl=server_context(fake.certificate))
    fake.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake


def assert_banner_not_echoed(response: Any) -> None:
    assert BANNER not in response.text
    assert "Jenkins" not in response.text


async def test_a_probe_of_a_service_that_is_not_tls_is_not_a_proxmox_node(
    user_client: UserClient, banner_port: int
) -> None:
    response = await user_client.http.post("/api/nodes/probe", json={"host": "127.0.0.1", "port": banner_port})
    assert_problem(response, 502, "not_a_proxmox_node")
    assert_banner_not_echoed(response)


async def test_a_probe_of_an_https_server_that_is_not_proxmox_shows_no_certificate(
    user_client: UserClient, fake_https: FakeHttps
) -> None:
    response = await user_client.http.post("/api/nodes/probe", json={"host": "127.0.0.1", "port": fake_https.port})
    assert_problem(response, 502, "not_a_proxmox_node")
    assert_banner_not_echoed(response)
    assert fake_https.certificate.fingerprint not in response.text


async def test_a_probe_of_a_proxmox_node_answers_its_certificate(
    user_client: UserClient, sim_node: RunningNode
) -> None:
    response = await user_client.http.post("/api/nodes/probe", json={"host": "127.0.0.1", "port": sim_node.api_port})
    assert response.status_code == 200, response.text
    assert response.json()["fingerprint_sha256"] == sim_node.fingerprint


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (f"HTTP/1.1 403 Forbidden {BANNER}\r\nContent-Type: text/html\r\n", f"<html>{BANNER}</html>"),
        (f"HTTP/1.1 500 {BANNER}\r\nContent-Type: application/json\r\n", f'{{"message": "{BANNER}"}}'),
        ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", f'{{"data": {{"name": "{BANNER}"}}}}'),
        ("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n", f"<html>{BANNER} Jenkins</html>"),
    ],
)
async def test_registering_a_server_that_is_not_proxmox_repeats_nothing_it_said(
    user_client: UserClient, node_payload: dict[str, Any], fake_https: FakeHttps, answer: str, body: str
) -> None:
    fake_https.answer, fake_https.body = answer, body
    response = await user_client.http.post(
        "/api/nodes",
        json={**node_payload, "port": fake_https.port, "tls_fingerprint": fake_https.certificate.fingerprint},
    )
    assert_problem(response, 502, "not_a_proxmox_node")
    assert_banner_not_echoed(response)


async def test_an_ssh_port_that_is_not_ssh_repeats_nothing_it_said(
    user_client: UserClient, registered_node: dict[str, Any], banner_port: int, node_payload: dict[str, Any]
) -> None:
    path = f"/api/nodes/{registered_node['id']}"
    moved = await user_client.http.patch(path, json={"ssh_port": banner_port, "ssh_password": "demo"})
    assert moved.status_code == 200, moved.text
    tested = await user_client.http.post(f"{path}/test")
    assert tested.json()["ssh"]["ok"] is False, tested.json()
    assert_banner_not_echoed(tested)


# ---------------------------------------------------------------- rate limit


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(outbound={"check_limit": 3})


async def test_node_checks_are_limited_per_user(
    user_client: UserClient, other_user_client: UserClient, sim_node: RunningNode, node_payload: dict[str, Any]
) -> None:
    probe = {"host": "127.0.0.1", "port": sim_node.api_port}
    for _ in range(3):
        assert (await user_client.http.post("/api/nodes/probe", json=probe)).status_code == 200
    limited = await user_client.http.post("/api/nodes/probe", json=probe)
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    # Registering counts against the same budget; another user has a budget of their own.
    assert_problem(await user_client.http.post("/api/nodes", json=node_payload), 429, "rate_limited")
    assert (await other_user_client.http.post("/api/nodes/probe", json=probe)).status_code == 200
