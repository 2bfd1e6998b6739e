"""A page in headless Chromium uses `infrahaus dev --demo` as a frontend would, through `browser/harness.mjs`.

The harness (Node, playwright-core, Debian's chromium) serves `browser/page.html` from the same origin as the API
(a reverse proxy on loopback), logs in, opens the dashboard's global event stream, registers the demo node,
submits a form with two invalid fields, creates a container from `web-hello` and follows its progress with
`EventSource`; the proxy drops the first stream mid-creation, and the browser must resume on its own with
`Last-Event-ID` after the server's `retry:` hint. After `done` the page leaves the stream open: the browser's
reconnect is answered 204 and EventSource stops. The harness prints one JSON report; this test asserts on it and
compares the ids the browser received with a full replay of the stream read afterwards.
"""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.node import CLIENTS, installed, run_node
from tests.fixtures.dev import DevServer, start_dev_server

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("INFRAHAUS_CHROMIUM", "/usr/bin/chromium")
CUT_AFTER = 3  # the harness drops the first stream after this many events
RETRY_MS = 500  # the demo's `retry:` hint here (INFRAHAUS_SSE_RETRY_MS), shorter than the 2 s default


def chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (`apt-get install chromium`, or "
            "`INFRAHAUS_BOOTSTRAP_SERVICES_CLIENTS=1 bash scripts/bootstrap.sh` as root), or set INFRAHAUS_CHROMIUM."
        )
    return CHROMIUM


def run_harness(server: DevServer) -> dict[str, Any]:
    config = {
        "api": server.base_url,
        "pvePort": server.sim_api_port,
        "sshPort": server.sim_ssh_port,
        "chromium": chromium(),
    }
    result = run_node([str(CLIENTS / "browser" / "harness.mjs"), json.dumps(config)], cwd=CLIENTS, timeout=240)
    assert result.returncode == 0, f"harness failed:\n{result.stdout}{result.stderr}\n{server.log()[-3000:]}"
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["failure"] is None, f"{outcome['failure']}\n{json.dumps(outcome, indent=1)}\n{server.log()[-3000:]}"
    return outcome


def replay_ids(server: DevServer, container_id: str) -> list[int]:
    """Every id of the container's progress stream, read from the start after the creation finished."""
    ids: list[int] = []
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        login = http.post("/api/auth/login", json={"username": "root@pam", "password": "demo"})
        assert login.status_code == 200, login.text
        with http.stream("GET", f"/api/containers/{container_id}/progress") as stream:
            assert stream.status_code == 200
            event: dict[str, str] = {}
            for line in stream.iter_lines():
                if line:
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")
                    continue
                if "data" in event:
                    if json.loads(event["data"])["type"] == "done":
                        return ids
                    ids.append(int(event["id"]))
                event = {}
    raise AssertionError(f"the replay ended without `done` after {ids}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    installed()
    with start_dev_server(tmp_path, settings={"INFRAHAUS_SSE_RETRY_MS": str(RETRY_MS)}) as running:
        yield running


def test_a_browser_page_logs_in_creates_and_follows_progress_across_a_reconnect(server: DevServer) -> None:
    outcome = run_harness(server)
    report, seen, streams = outcome["report"], outcome["seen"], outcome["streams"]
    context = json.dumps(outcome, indent=1)

    # Every request the page made went to its own origin on loopback; nothing failed in the page's script.
    assert seen["urls"], context
    assert all(url.startswith(f"{outcome['origin']}/") for url in seen["urls"]), seen["urls"]
    assert outcome["origin"].startswith("http://127.0.0.1:")
    assert seen["pageErrors"] == [], seen["pageErrors"]
    assert report["failure"] is None, context

    # Cookie session: the cookie is HttpOnly (invisible to scripts) yet authenticates; writes need the CSRF header.
    assert report["login"] == {"status": 200, "auth": "session"}
    assert report["sessionCookieVisible"] is False
    assert report["me"] == {"status": 200, "userid": "root@pam", "auth": "session"}
    assert report["csrfMissing"] == {"status": 403, "code": "csrf_failed"}
    assert report["node"]["status"] == 201

    # The invalid form: one problem+json answer names both fields; the page shows each message next to its field.
    validation = report["validation"]
    assert validation["status"] == 422
    assert validation["contentType"].startswith("application/problem+json")
    assert validation["code"] == "validation_failed"
    assert validation["detail"] == "2 fields are invalid: hostname, vmid"
    assert seen["formError"] == validation["detail"]
    assert [(e["field"], e["code"]) for e in validation["errors"]] == [("hostname", "format"), ("vmid", "too_small")]
    assert seen["shownNextToHostname"] == validation["shown"]["hostname"]
    assert "regex" not in seen["shownNextToHostname"]
    assert seen["shownNextToVmid"] == "Must be at least 100."
    assert validation["requestId"]  # same origin: the page reads X-Request-ID to quote it

    assert report["created"]["status"] == 202
    assert report["created"]["location"] == f"/api/operations/{report['created']['operationId']}"

    # The proxy dropped the first stream after CUT_AFTER events, while the creation was still running (the
    # worker's Proxmox calls were held until the browser came back); the browser reconnected by itself with the
    # last id it had seen, after the server's retry hint, and the resumed stream carried the rest up to `done`.
    assert len(streams) == 3, streams
    first, resumed, after_done = streams
    assert first["cut"]
    assert first["lastEventId"] is None
    assert first["retry"] == resumed["retry"] == RETRY_MS
    assert first["named"] == resumed["named"] == []  # every item an unnamed event: onmessage gets them all
    first_ids = [e["id"] for e in first["events"] if e["id"] is not None]
    assert len(first_ids) == CUT_AFTER, first
    assert resumed["lastEventId"] == str(first_ids[-1]), resumed
    assert resumed["openedAt"] - first["openedAt"] >= RETRY_MS
    assert resumed["ended"]
    assert resumed["events"][-1]["type"] == "done", resumed
    held = outcome["relay"]["holds"][-1]
    assert held["releasedBy"] == "browser reconnected", outcome["relay"]
    assert held["writes"] > 0, "the creation did not need Proxmox while the browser was away: not mid-creation"
    stream = report["stream"]
    assert len(stream["opens"]) == 2, stream

    # `done` repeated the last id; the browser's reconnect with it got 204 and EventSource stopped for good.
    last_id = stream["events"][-1]["id"]
    assert resumed["events"][-1]["id"] == last_id
    assert after_done["lastEventId"] == str(last_id)
    assert after_done["status"] == 204
    assert stream["closedByServer"] is True
    # 0 = CONNECTING again (the cut; the server's end after `done`), 2 = CLOSED for good (the 204).
    assert [e["readyState"] for e in stream["connectionErrors"]] == [0, 0, 2]
    assert stream["connectionErrors"][0]["lastSeen"] == first_ids[-1]

    # No gap and no duplicate: the browser got exactly the ids of a full replay, each once, in order.
    received = [e["id"] for e in stream["events"]]
    assert received == replay_ids(server, report["created"]["containerId"])
    assert received == list(range(1, len(received) + 1))
    assert {"queued", "step", "log", "created"} <= {e["type"] for e in stream["events"]}
    assert seen["progressItems"] == len(received)
    assert stream["done"]["status"] == "succeeded"
    assert stream["done"]["operation_id"] == report["created"]["operationId"]

    # The dashboard's one stream saw the container appear and every change of its state and its operation.
    container_id = report["created"]["containerId"]
    mine = [i for i in report["dashboard"]["items"] if i["containerId"] == container_id]
    states: list[tuple[str, str | None]] = []
    for item in mine:
        if not states or states[-1] != (item["lifecycle"], item["status"]):
            states.append((item["lifecycle"], item["status"]))
    assert states == [("creating", None), ("ready", "running")], mine
    statuses: list[str] = []
    for item in mine:
        if item["operation"] and (not statuses or statuses[-1] != item["operation"]["status"]):
            statuses.append(item["operation"]["status"])
    assert statuses == ["queued", "running", "succeeded"]
    assert [i["id"] for i in report["dashboard"]["items"]] == sorted({i["id"] for i in report["dashboard"]["items"]})
    assert seen["dashboardRows"] == [f"{container_id}: ready, running"]

    # A conditional GET of the finished operation: 304, same tag.
    conditional = report["conditional"]
    assert conditional["etag"].startswith('"')
    assert conditional["status"] == 304
    assert conditional["etagAgain"] == conditional["etag"]

    assert report["final"] == {
        "lifecycle": "ready",
        "status": "running",
        "operationStatus": "succeeded",
        "operationKind": "create",
    }
    assert seen["statusText"] == "browser-web: ready, running"
