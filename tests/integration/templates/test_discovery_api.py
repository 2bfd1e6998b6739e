"""POST /api/templates/discover and `infrahaus templates discover` against PostgreSQL."""

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infrahaus.cli import main
from infrahaus_api.app import create_app
from infrahaus_domain.settings import Settings
from tests.fixtures.api import UserClient, api_client, assert_problem


async def discover(client: UserClient) -> dict[str, Any]:
    response = await client.http.post("/api/templates/discover")
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def by_name(client: UserClient) -> dict[str, dict[str, Any]]:
    items = (await client.http.get("/api/templates?source=filesystem")).json()["items"]
    return {t["name"]: (await client.http.get(f"/api/templates/{t['id']}")).json() for t in items}


async def test_discovery_creates_then_changes_nothing(user_client: UserClient) -> None:
    report = await discover(user_client)
    assert report == {
        "created": ["app-stack", "web-hello"],
        "updated": [],
        "unchanged": [],
        "removed": [],
        "errors": [],
    }
    first = await by_name(user_client)

    app = first["app-stack"]
    assert app["unprivileged"] is True  # "TEMPLATE_UNPRIVILEGED=1 # set to 0 for privileged"
    assert (app["cores"], app["memory_mb"], app["nesting"], app["os_template"]) == (2, 1024, True, "debian-12-standard")
    assert {f["policy"] for f in app["files"]} == {"replace", "default", "backup"}
    assert {(p["manager"], p["bucket"]) for p in app["packages"]} == {("apt", "base"), ("pip", "app")}
    assert [s["name"] for s in app["scripts"]] == ["00-base", "10-user", "20-app", "30-service"]

    again = await discover(user_client)
    assert again == {"created": [], "updated": [], "unchanged": ["app-stack", "web-hello"], "removed": [], "errors": []}
    assert await by_name(user_client) == first  # same ids, same timestamps: nothing was rewritten


async def test_discovery_updates_changed_templates(user_client: UserClient, templates_root: Path) -> None:
    await discover(user_client)
    before = await by_name(user_client)
    conf = templates_root / "web-hello" / "template.conf"
    conf.write_text(conf.read_text().replace("TEMPLATE_CPU=1", "TEMPLATE_CPU=3"))
    (templates_root / "web-hello/container-configs/scripts/50-extra.sh").write_text("#!/bin/sh\n# Extra step.\ntrue\n")

    report = await discover(user_client)
    assert (report["updated"], report["unchanged"]) == (["web-hello"], ["app-stack"])
    after = await by_name(user_client)
    web = after["web-hello"]
    assert web["id"] == before["web-hello"]["id"]
    assert web["cores"] == 3
    assert [(s["name"], s["description"]) for s in web["scripts"]][-1] == ("50-extra", "Extra step.")
    assert after["app-stack"] == before["app-stack"]


async def test_a_broken_template_is_reported_and_the_rest_sync(user_client: UserClient, templates_root: Path) -> None:
    await discover(user_client)
    before = await by_name(user_client)
    conf = templates_root / "web-hello" / "template.conf"
    conf.write_text(conf.read_text() + "TEMPLATE_CPU=$(nproc)\n")
    hostile = templates_root / "hostile" / "container-configs" / "files"
    hostile.mkdir(parents=True)
    (templates_root / "hostile" / "template.conf").write_text("TEMPLATE_APP=hostile\n")
    (hostile / "evil").write_text("x")
    (hostile / "evil.path").write_text("/etc/../../root\n")
    fresh = templates_root / "fresh"
    shutil.copytree(templates_root / "app-stack", fresh)
    (fresh / "template.conf").write_text('TEMPLATE_APP="fresh"\n')

    report = await discover(user_client)
    errors = {e["template"]: e["error"] for e in report["errors"]}
    assert set(errors) == {"hostile", "web-hello"}
    assert "command substitution" in errors["web-hello"]
    assert "line" in errors["web-hello"]
    assert "files.0.target_path" in errors["hostile"]
    assert ".." in errors["hostile"]
    assert (report["created"], report["unchanged"], report["removed"]) == (["fresh"], ["app-stack"], [])

    after = await by_name(user_client)
    assert after["web-hello"] == before["web-hello"]  # the last good version stays
    assert "hostile" not in after
    assert after["fresh"]["scripts"]
    assert after["fresh"]["name"] == "fresh"


async def test_a_removed_directory_removes_its_template(user_client: UserClient, templates_root: Path) -> None:
    await discover(user_client)
    web_id = (await by_name(user_client))["web-hello"]["id"]
    shutil.rmtree(templates_root / "web-hello")
    report = await discover(user_client)
    assert (report["removed"], report["unchanged"]) == (["web-hello"], ["app-stack"])
    assert_problem(await user_client.http.get(f"/api/templates/{web_id}"), 404, "not_found")


async def test_a_missing_directory_is_an_error_not_a_mass_removal(
    user_client: UserClient, templates_root: Path
) -> None:
    await discover(user_client)
    shutil.rmtree(templates_root)
    problem = assert_problem(await user_client.http.post("/api/templates/discover"), 409, "templates_dir_unavailable")
    assert "does not exist" in problem["detail"]
    assert set(await by_name(user_client)) == {"app-stack", "web-hello"}


async def test_no_directory_configured(settings: Settings, user_client: UserClient) -> None:
    app = create_app(msgspec.structs.replace(settings, templates_dir=None))
    async with app.lifespan(), api_client(app, {"Authorization": f"Bearer {user_client.token}"}) as http:
        response = await http.post("/api/templates/discover")
        problem = assert_problem(response, 409, "templates_dir_unavailable")
        assert "INFRAHAUS_TEMPLATES_DIR" in problem["detail"]


async def test_discovery_needs_authentication(client: AsyncTestClient[Litestar]) -> None:
    assert_problem(await client.post("/api/templates/discover"), 401, "unauthenticated")


def count_filesystem_templates(db_url: str) -> int:
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        row = conn.execute("SELECT count(*) FROM templates WHERE source = 'filesystem'").fetchone()
    assert row is not None
    return int(row[0])


def test_cli_discover(
    db_url: str, templates_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFRAHAUS_DATABASE_URL", db_url)
    monkeypatch.delenv("INFRAHAUS_TEMPLATES_DIR", raising=False)

    assert main(["templates", "discover", "--dir", str(templates_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == ["app-stack", "web-hello"]
    assert count_filesystem_templates(db_url) == 2

    monkeypatch.setenv("INFRAHAUS_TEMPLATES_DIR", str(templates_root))
    assert main(["templates", "discover"]) == 0
    assert "unchanged: app-stack, web-hello" in capsys.readouterr().out

    (templates_root / "app-stack" / "template.conf").write_text("TEMPLATE_FUSE=perhaps\n")
    assert main(["templates", "discover"]) == 1
    assert "error: app-stack: template.conf: TEMPLATE_FUSE must be 0 or 1" in capsys.readouterr().out

    assert main(["templates", "discover", "--dir", str(templates_root / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().out
    assert count_filesystem_templates(db_url) == 2


async def test_a_template_linking_to_a_server_file_is_reported_and_never_read(
    user_client: UserClient, templates_root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "server-only.key"
    secret.write_text("server-secret-that-no-user-may-read\n")
    (templates_root / "web-hello/container-configs/scripts/99-steal.sh").symlink_to(secret)
    report = await discover(user_client)
    assert report["created"] == ["app-stack"]
    [error] = report["errors"]
    assert error["template"] == "web-hello"
    assert "symbolic link" in error["error"]
    everything = json.dumps(await by_name(user_client)) + json.dumps(report)
    assert "server-secret-that-no-user-may-read" not in everything
