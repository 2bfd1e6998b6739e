"""Refused addresses are refused before any connection, checked where nothing could leave the machine anyway.

The API runs in a child process inside a network namespace of its own (`unshare --net`: only `lo`, brought up),
in the embedded mode (SQLite, in-memory stores), with the production policy (no loopback) plus a deny list. An
audit hook in that process records every `socket.connect`: a refused address must answer `outbound_denied` with no
connection attempted. One allowed address is the control: the process does try it (and the namespace makes that
attempt fail locally), which shows the hook would have seen a connection.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# One worker runs the whole module, so its module-scoped fixture is built once under pytest-xdist.
pytestmark = pytest.mark.xdist_group("outbound_isolated")

REPO = Path(__file__).resolve().parents[3]

CHILD = r"""
import asyncio, json, sys, uuid

connects = []
sys.addaudithook(lambda event, args: connects.append(repr(args[1])) if event == "socket.connect" else None)

from infrahaus_api.app import create_app
from infrahaus_domain import migrations
from infrahaus_domain.crypto import generate_key
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.settings import DatabaseSettings, EncryptionSettings, LogSettings, OutboundSettings, Settings
from tests.fixtures.api import api_client, issue_user_token, running

TARGETS = json.loads(sys.argv[1])
CONTROL = sys.argv[2]


async def main() -> None:
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{sys.argv[3]}/isolated.db"),
        encryption=EncryptionSettings(keys=(generate_key("isolated"),)),
        outbound=OutboundSettings(deny=("10.0.0.0/8", "*.internal.example"), check_limit=1000),
        logging=LogSettings(format="text", level="ERROR"),
    )
    app = create_app(settings)
    resources = app.state.resources
    await migrations.upgrade(resources.engine)
    user_id, token = await issue_user_token(resources.sessionmaker, "alice@pve")
    results = {}
    async with running(app), api_client(app, {"Authorization": f"Bearer {token}"}) as http:
        for host in [*TARGETS, CONTROL]:
            before = len(connects)
            probe = await http.post("/api/nodes/probe", json={"host": host, "port": 8006})
            create = await http.post(
                "/api/nodes",
                json={"name": f"n-{uuid.uuid4().hex[:6]}", "host": host, "token_id": "root@pam!infrahaus",
                      "token_secret": "s", "ssh_password": "p"},
            )
            # A node saved before the policy refused its address: every call through it is refused too.
            async with resources.sessionmaker() as session:
                node = Node(user_id=user_id, name=f"saved-{uuid.uuid4().hex[:6]}", host=host, port=8006,
                            pve_node="pve", token_id="root@pam!infrahaus", token_secret=resources.box.encrypt("s"),
                            ssh_password=resources.box.encrypt("p"))
                session.add(node)
                await session.commit()
                node_id = node.id
            status = await http.get(f"/api/nodes/{node_id}/status")
            tested = (await http.post(f"/api/nodes/{node_id}/test")).json()
            results[host] = {
                "probe": probe.json().get("code"),
                "create": create.json().get("code"),
                "status": status.json().get("code"),
                "test_api": tested["api"].get("code"),
                "test_ssh": tested["ssh"].get("code"),
                "connects": connects[before:],
            }
    print(json.dumps(results))


asyncio.run(main())
"""

REFUSED = [
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "127.0.0.1",  # loopback: refused outside the embedded `dev` mode unless allowed
    "0:0:0:0:0:ffff:7f00:1",  # the same, IPv4-mapped
    "0:0:0:0:0:0:0:1",
    "0.0.0.0",  # noqa: S104 - an address to refuse, nothing binds to it
    "localhost",  # a name resolving to loopback (from /etc/hosts: no DNS query either)
    "10.1.2.3",  # INFRAHAUS_OUTBOUND_DENY
    "pve.internal.example",  # denied by name, before any lookup
]
CONTROL = "192.0.2.1"  # TEST-NET-1: allowed by the policy, unroutable in the namespace


def isolated(*args: str) -> dict[str, Any]:
    """Run the child under `unshare --net` (as root; else with a user namespace) with only `lo` up."""
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--net", "--map-root-user"]
    script = 'ip link set lo up && exec "$0" -c "$1" "$2" "$3" "$4"'
    completed = subprocess.run(
        [*unshare, "sh", "-c", script, sys.executable, CHILD, *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return isolated(json.dumps(REFUSED), CONTROL, str(tmp_path_factory.mktemp("isolated")))


@pytest.mark.parametrize("host", REFUSED)
def test_a_refused_address_is_outbound_denied_before_any_connection(outcomes: dict[str, Any], host: str) -> None:
    seen = outcomes[host]
    assert seen["connects"] == [], seen
    assert (seen["probe"], seen["create"], seen["status"]) == ("outbound_denied",) * 3, seen
    assert (seen["test_api"], seen["test_ssh"]) == ("outbound_denied", "outbound_denied"), seen


def test_an_allowed_address_is_tried_and_fails_inside_the_namespace(outcomes: dict[str, Any]) -> None:
    seen = outcomes[CONTROL]
    assert seen["connects"], "the audit hook saw no connection: the refused cases would prove nothing"
    assert all(CONTROL in attempt for attempt in seen["connects"]), seen
    assert seen["probe"] == "node_unreachable", seen
    assert seen["test_api"] == "node_unreachable", seen
