"""/api/templates against PostgreSQL: CRUD, search, pagination, ownership, read-only filesystem templates,
atomic replacement, bucket copy and hostile input."""

import base64
import json
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.api import UserClient, assert_problem

SHELL_SPECIALS = " \t\n;&|$`'\"\\<>()[]{}*?!#~"


def body(name: str = "my-app", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "description": "A test template",
        "tags": ["web"],
        "os_template": "debian-12-standard",
        "cores": 2,
        "memory_mb": 1024,
        "scripts": [
            {"name": "10-second", "content": "echo 2", "position": 10},
            {"name": "00-first", "content": "echo 1", "position": 0, "description": "first"},
        ],
        "files": [{"name": "app.conf", "target_path": "/etc/app", "content": "x=1\n", "policy": "replace"}],
        "packages": [
            {"name": "curl", "manager": "apt"},
            {"name": "flask", "manager": "pip", "version": "==3.0.0", "bucket": "py"},
        ],
    }
    data.update(overrides)
    return data


async def create(client: UserClient, **kwargs: Any) -> dict[str, Any]:
    response = await client.http.post("/api/templates", json=body(**kwargs))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def discover(client: UserClient) -> dict[str, Any]:
    response = await client.http.post("/api/templates/discover")
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def test_crud(user_client: UserClient) -> None:
    http = user_client.http
    response = await http.post("/api/templates", json=body())
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/api/templates/{created['id']}"
    assert created["source"] == "custom"
    assert created["owner_id"] == str(user_client.user_id)
    assert [(s["name"], s["position"]) for s in created["scripts"]] == [("00-first", 0), ("10-second", 1)]
    assert created["files"][0] | {"id": None} == {
        "id": None,
        "name": "app.conf",
        "target_path": "/etc/app",
        "policy": "replace",
        "mode": "0644",
        "content": "x=1\n",
    }
    assert [(p["manager"], p["name"], p["version"], p["bucket"]) for p in created["packages"]] == [
        ("apt", "curl", None, None),
        ("pip", "flask", "==3.0.0", "py"),
    ]

    fetched = (await http.get(f"/api/templates/{created['id']}")).json()
    assert fetched == created

    listed = (await http.get("/api/templates")).json()
    assert [t["id"] for t in listed["items"]] == [created["id"]]
    assert listed["items"][0]["script_count"] == 2
    assert listed["next_cursor"] is None

    replaced = await http.put(
        f"/api/templates/{created['id']}",
        json=body(name="renamed", cores=4, scripts=[{"name": "00-only", "content": "true"}], files=[], packages=[]),
    )
    assert replaced.status_code == 200, replaced.text
    after = replaced.json()
    assert (after["name"], after["cores"], after["files"], after["packages"]) == ("renamed", 4, [], [])
    assert [s["name"] for s in after["scripts"]] == ["00-only"]
    assert after["created_at"] == created["created_at"]
    assert after["updated_at"] >= created["updated_at"]

    deleted = await http.delete(f"/api/templates/{created['id']}")
    assert deleted.status_code == 204
    assert_problem(await http.get(f"/api/templates/{created['id']}"), 404, "not_found")
    assert_problem(await http.delete(f"/api/templates/{created['id']}"), 404, "not_found")


async def test_put_keeps_the_ids_and_positions_of_unchanged_children(user_client: UserClient) -> None:
    created = await create(user_client)
    response = await user_client.http.put(f"/api/templates/{created['id']}", json=body(description="again"))
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["description"] == "again"
    for kind in ("scripts", "files", "packages"):
        assert after[kind] == created[kind], kind


async def test_put_changes_only_what_changed_and_saved_script_choices_stay_valid(
    user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    created = await create(user_client)
    first, second = created["scripts"]
    scripts = [
        {"name": "00-first", "content": "echo 1", "position": 0, "description": "first"},
        {"name": "10-second", "content": "echo two", "position": 10},
        {"name": "20-third", "content": "echo 3", "position": 20},
    ]
    packages = [{"name": "flask", "manager": "pip", "version": "==3.0.0", "bucket": "py"}]
    response = await user_client.http.put(
        f"/api/templates/{created['id']}", json=body(scripts=scripts, packages=packages)
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["scripts"][0] == first
    assert after["scripts"][1] == {**second, "content": "echo two"}
    assert after["scripts"][2]["id"] not in {first["id"], second["id"]}
    assert after["files"] == created["files"]
    assert after["packages"] == [created["packages"][1]]

    # A client's saved choices (script ids from before the edit) still name the template's scripts.
    choice = {"scripts": [{"id": second["id"], "enabled": True}, {"id": first["id"], "enabled": False}]}
    preflight = await user_client.http.post(
        "/api/containers/preflight", json={"hostname": "kept", "template_id": created["id"], **choice}
    )
    assert preflight.status_code == 200, preflight.text
    accepted = await user_client.http.post(
        "/api/containers", json={"hostname": "kept", "template_id": created["id"], **choice}
    )
    assert accepted.status_code == 202, accepted.text


async def test_failed_put_leaves_the_template_intact(user_client: UserClient) -> None:
    created = await create(user_client)
    # Duplicate script names pass the per-field checks and fail on the database's unique constraint,
    # after the old children were already deleted inside the transaction.
    broken = body(
        name="should-not-stick",
        cores=8,
        scripts=[{"name": "dup", "content": "a"}, {"name": "dup", "content": "b"}],
        packages=[{"name": "git", "manager": "apt"}],
    )
    response = await user_client.http.put(f"/api/templates/{created['id']}", json=broken)
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"] == [
        {"field": "scripts", "message": "Script names must be unique within a template.", "code": "invalid"}
    ]

    after = (await user_client.http.get(f"/api/templates/{created['id']}")).json()
    assert after == created


async def test_duplicate_packages_and_files_are_field_errors(user_client: UserClient) -> None:
    created = await create(user_client)
    packages = [{"name": "curl", "manager": "apt"}, {"name": "curl", "manager": "apt", "version": "8"}]
    response = await user_client.http.put(f"/api/templates/{created['id']}", json=body(packages=packages))
    assert assert_problem(response, 422)["errors"][0]["field"] == "packages"
    file = {"name": "a", "target_path": "/etc", "content": ""}
    response = await user_client.http.post("/api/templates", json=body(name="other", files=[file, file]))
    assert assert_problem(response, 422)["errors"][0]["field"] == "files"
    assert (await user_client.http.get(f"/api/templates/{created['id']}")).json() == created


async def test_names_are_unique_per_owner(user_client: UserClient, other_user_client: UserClient) -> None:
    await create(user_client, name="same")
    assert_problem(await user_client.http.post("/api/templates", json=body(name="same")), 409, "conflict")
    other = await create(other_user_client, name="same")
    assert other["owner_id"] == str(other_user_client.user_id)


async def test_another_users_template_is_not_found(user_client: UserClient, other_user_client: UserClient) -> None:
    mine = await create(user_client)
    bucket = (await other_user_client.http.post("/api/package-buckets", json={"name": "b"})).json()
    path = f"/api/templates/{mine['id']}"
    other = other_user_client.http
    assert_problem(await other.get(path), 404, "not_found")
    assert_problem(await other.put(path, json=body()), 404, "not_found")
    assert_problem(await other.delete(path), 404, "not_found")
    from_bucket = await other.post(f"{path}/packages/from-bucket", json={"bucket_id": bucket["id"]})
    assert_problem(from_bucket, 404, "not_found")
    assert (await other.get("/api/templates")).json()["items"] == []
    assert (await user_client.http.get(path)).status_code == 200


async def test_filesystem_templates_are_shared_and_read_only(
    user_client: UserClient, other_user_client: UserClient
) -> None:
    await discover(user_client)
    listed = (await other_user_client.http.get("/api/templates?source=filesystem")).json()["items"]
    web = next(t for t in listed if t["name"] == "web-hello")
    assert (web["source"], web["owner_id"]) == ("filesystem", None)
    path = f"/api/templates/{web['id']}"
    full = (await other_user_client.http.get(path)).json()
    assert full["scripts"]
    assert full["files"]

    problem = assert_problem(await user_client.http.put(path, json=body()), 409, "template_read_only")
    assert "templates directory" in problem["detail"]
    assert_problem(await user_client.http.delete(path), 409, "template_read_only")
    bucket = (await user_client.http.post("/api/package-buckets", json={"name": "b"})).json()
    response = await user_client.http.post(f"{path}/packages/from-bucket", json={"bucket_id": bucket["id"]})
    assert_problem(response, 409, "template_read_only")
    assert (await user_client.http.get(path)).json() == full


async def test_search_and_filters(user_client: UserClient, other_user_client: UserClient) -> None:
    await discover(user_client)
    await create(user_client, name="postgres-db", description="Database server", tags=["db", "Storage"])
    await create(user_client, name="cache", description="Redis for the DB tier", tags=["db"])
    await create(user_client, name="under_score", description="100% literal", tags=["a_b"])
    await create(other_user_client, name="postgres-other", tags=["db"])

    async def names(query: str) -> list[str]:
        response = await user_client.http.get(f"/api/templates{query}")
        assert response.status_code == 200, response.text
        return [t["name"] for t in response.json()["items"]]

    assert await names("") == ["app-stack", "cache", "postgres-db", "under_score", "web-hello"]
    assert await names("?q=postgres") == ["postgres-db"]
    assert await names("?q=db") == ["cache", "postgres-db"]  # name or description, case-insensitive
    assert await names("?q=%25") == ["under_score"]  # LIKE wildcards are literal
    assert await names("?q=_") == ["under_score"]
    assert await names("?tag=db") == ["cache", "postgres-db"]
    assert await names("?tag=STORAGE") == ["postgres-db"]
    assert await names("?tag=ab") == []  # "_" in a tag is not a wildcard
    assert await names("?tag=a_b") == ["under_score"]
    assert await names("?tag=demo") == ["app-stack", "web-hello"]
    assert await names("?source=custom") == ["cache", "postgres-db", "under_score"]
    assert await names("?source=filesystem") == ["app-stack", "web-hello"]
    assert await names("?source=custom&tag=db&q=cache") == ["cache"]
    assert_problem(await user_client.http.get("/api/templates?source=elsewhere"), 422, "validation_failed")
    for query, field in (("?q=a%00b", "q"), ("?tag=%00", "tag"), ("?tag=no%20spaces", "tag")):
        problem = assert_problem(await user_client.http.get(f"/api/templates{query}"), 422, "validation_failed")
        assert [e["field"] for e in problem["errors"]] == [field]


async def test_cursor_pagination(user_client: UserClient) -> None:
    await discover(user_client)
    for name in ["e", "b", "d", "a", "c"]:
        await create(user_client, name=f"t-{name}")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await user_client.http.get(f"/api/templates{query}")).json()
        assert len(page["items"]) <= 2
        seen += [t["name"] for t in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["app-stack", "t-a", "t-b", "t-c", "t-d", "t-e", "web-hello"]
    assert pages == 4
    nul_name = base64.urlsafe_b64encode(json.dumps(["\x00", str(uuid.uuid4())]).encode()).decode()
    for cursor in ("garbage!", nul_name, base64.urlsafe_b64encode(b'{"a": 1}').decode()):
        problem = assert_problem(await user_client.http.get(f"/api/templates?cursor={cursor}"), 422)
        assert problem["errors"][0]["field"] == "cursor"
    assert_problem(await user_client.http.get("/api/templates?limit=501"), 422, "validation_failed")


async def test_copy_bucket_into_template(user_client: UserClient) -> None:
    http = user_client.http
    template = await create(user_client)
    bucket = (await http.post("/api/package-buckets", json={"name": "py-tools"})).json()
    text = "curl\nrequests==2.31.0\nflask\n"  # flask is already in the template (pip), curl is apt there
    imported = await http.post(f"/api/package-buckets/{bucket['id']}/packages", json={"manager": "pip", "text": text})
    assert imported.json() == {"imported": 3, "skipped": 0}

    response = await http.post(
        f"/api/templates/{template['id']}/packages/from-bucket", json={"bucket_id": bucket["id"]}
    )
    assert response.status_code == 200, response.text
    packages = [(p["manager"], p["name"], p["version"], p["bucket"]) for p in response.json()["packages"]]
    assert packages == [
        ("apt", "curl", None, None),
        ("pip", "flask", "==3.0.0", "py"),
        ("pip", "curl", None, "py-tools"),
        ("pip", "requests", "==2.31.0", "py-tools"),
    ]
    again = await http.post(f"/api/templates/{template['id']}/packages/from-bucket", json={"bucket_id": bucket["id"]})
    assert len(again.json()["packages"]) == 4
    missing = await http.post(
        f"/api/templates/{template['id']}/packages/from-bucket",
        json={"bucket_id": "01900000-0000-7000-8000-000000000000"},
    )
    assert_problem(missing, 404, "not_found")


async def test_body_shape_errors_are_422(user_client: UserClient) -> None:
    http = user_client.http
    problem = assert_problem(await http.post("/api/templates", json=body(unexpected=1)), 422, "validation_failed")
    assert problem["errors"]
    bad_manager = body(packages=[{"name": "x", "manager": "gem"}])
    problem = assert_problem(await http.post("/api/templates", json=bad_manager), 422, "validation_failed")
    # Decoding errors come from Litestar; tolerate "packages[0].manager" as well as the dotted form.
    assert problem["errors"][0]["field"].replace("[", ".").replace("]", "") == "packages.0.manager"
    problem = assert_problem(await http.post("/api/templates", json=body(cores=0)), 422, "validation_failed")
    assert problem["errors"][0]["field"] == "cores"


HOSTILE = ["; rm -rf /", "$(reboot)", "`id`", "../../etc/passwd", "a\nb", "it's", 'say "hi"', "x && y"]


async def test_hostile_names_are_rejected_with_field_errors(user_client: UserClient) -> None:
    n = len(HOSTILE)
    data = body(
        name="; rm -rf /",
        tags=["$(id)"],
        scripts=[{"name": h, "content": "echo"} for h in HOSTILE],
        files=[{"name": h, "target_path": f"/srv/{h}", "content": ""} for h in HOSTILE],
        packages=[{"name": h, "manager": m} for h in HOSTILE for m in ("apt", "pip", "npm")],
        storage="local; reboot",
        bridge="vmbr0`id`",
        os_template="local:vztmpl/../../etc/shadow",
    )
    problem = assert_problem(await user_client.http.post("/api/templates", json=data), 422, "validation_failed")
    fields = {e["field"] for e in problem["errors"]}
    expected = {"name", "tags.0", "storage", "bridge", "os_template"}
    expected |= {f"scripts.{i}.name" for i in range(n)} | {f"files.{i}.name" for i in range(n)}
    expected |= {f"files.{i}.target_path" for i in range(n)} | {f"packages.{i}.name" for i in range(3 * n)}
    assert fields == expected
    assert all(e["message"].startswith("invalid ") for e in problem["errors"])
    assert (await user_client.http.get("/api/templates")).json()["items"] == []


def hypothesis_hostile_names(count: int) -> list[str]:
    """Names that each contain at least one shell metacharacter, drawn by hypothesis (deterministically)."""
    found: list[str] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None)
    @given(st.tuples(st.text(max_size=12), st.sampled_from(SHELL_SPECIALS), st.text(max_size=12)).map("".join))
    def collect(value: str) -> None:
        found.append(value)

    collect()
    return found


async def test_hypothesis_hostile_names_are_rejected_through_the_api(user_client: UserClient) -> None:
    names = hypothesis_hostile_names(150)
    assert len(names) >= 100
    scripts = [{"name": name, "content": "echo"} for name in names]
    files = [{"name": name, "target_path": "/srv", "content": ""} for name in names]
    packages = [{"name": name, "manager": "apt"} for name in names]
    data = body(scripts=scripts, files=files, packages=packages)
    problem = assert_problem(await user_client.http.post("/api/templates", json=data), 422, "validation_failed")
    fields = {e["field"] for e in problem["errors"]}
    for kind in ("scripts", "files", "packages"):
        assert {f"{kind}.{i}.name" for i in range(len(names))} <= fields
