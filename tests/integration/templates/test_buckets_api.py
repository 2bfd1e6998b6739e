"""/api/package-buckets against PostgreSQL: CRUD, ownership, list and bulk-text import."""

from typing import Any

import pytest

from tests.fixtures.api import UserClient, assert_problem


async def make_bucket(client: UserClient, name: str = "tools", description: str = "") -> dict[str, Any]:
    response = await client.http.post("/api/package-buckets", json={"name": name, "description": description})
    assert response.status_code == 201, response.text
    bucket: dict[str, Any] = response.json()
    return bucket


async def test_crud(user_client: UserClient) -> None:
    http = user_client.http
    bucket = await make_bucket(user_client, "tools", "CLI tools")
    assert (bucket["name"], bucket["description"], bucket["packages"]) == ("tools", "CLI tools", [])
    await make_bucket(user_client, "alpha")

    listed = (await http.get("/api/package-buckets")).json()
    assert [(b["name"], b["package_count"]) for b in listed["items"]] == [("alpha", 0), ("tools", 0)]
    first = (await http.get("/api/package-buckets?limit=1")).json()
    assert [b["name"] for b in first["items"]] == ["alpha"]
    second = (await http.get(f"/api/package-buckets?limit=1&cursor={first['next_cursor']}")).json()
    assert ([b["name"] for b in second["items"]], second["next_cursor"]) == (["tools"], None)

    path = f"/api/package-buckets/{bucket['id']}"
    patched = await http.patch(path, json={"description": "renamed too", "name": "cli"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["description"]) == ("cli", "renamed too")
    only_name = (await http.patch(path, json={"name": "cli-tools"})).json()
    assert (only_name["name"], only_name["description"]) == ("cli-tools", "renamed too")
    assert_problem(await http.patch(path, json={"name": "alpha"}), 409, "conflict")
    assert_problem(await http.post("/api/package-buckets", json={"name": "alpha"}), 409, "conflict")

    assert (await http.delete(path)).status_code == 204
    assert_problem(await http.get(path), 404, "not_found")


async def test_another_users_bucket_is_not_found(user_client: UserClient, other_user_client: UserClient) -> None:
    bucket = await make_bucket(user_client)
    path = f"/api/package-buckets/{bucket['id']}"
    added = await user_client.http.post(f"{path}/packages", json={"manager": "apt", "text": "curl\n"})
    assert added.status_code == 200
    package_id = (await user_client.http.get(path)).json()["packages"][0]["id"]
    other = other_user_client.http
    assert_problem(await other.get(path), 404, "not_found")
    assert_problem(await other.patch(path, json={"name": "mine"}), 404, "not_found")
    assert_problem(await other.delete(path), 404, "not_found")
    assert_problem(await other.post(f"{path}/packages", json={"manager": "apt", "text": "vim"}), 404, "not_found")
    assert_problem(await other.delete(f"{path}/packages/{package_id}"), 404, "not_found")
    assert (await other.get("/api/package-buckets")).json()["items"] == []
    # Both users may have a bucket with the same name.
    await make_bucket(other_user_client, "tools")
    assert len((await user_client.http.get(path)).json()["packages"]) == 1


async def test_bulk_text_import_counts(user_client: UserClient) -> None:
    bucket = await make_bucket(user_client)
    path = f"/api/package-buckets/{bucket['id']}/packages"
    text = (
        "# Developer tools\n"
        "\n"
        "curl            # transfer tool\n"
        "git\n"
        "   \n"
        "nginx=1.22*\n"
        "curl\n"  # duplicate inside the text
        "\t# indented comment\n"
        "vim # editor\n"
    )
    response = await user_client.http.post(path, json={"manager": "apt", "text": text})
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 4, "skipped": 1}

    # Against existing packages: curl and git exist for apt; pip's git is a different package.
    again = await user_client.http.post(path, json={"manager": "apt", "text": "git\ncurl # again\nhtop\n"})
    assert again.json() == {"imported": 1, "skipped": 2}
    pip = await user_client.http.post(path, json={"manager": "pip", "text": "git\nflask==3.0.0\n"})
    assert pip.json() == {"imported": 2, "skipped": 0}

    packages = (await user_client.http.get(f"/api/package-buckets/{bucket['id']}")).json()["packages"]
    assert [(p["manager"], p["name"], p["version"]) for p in packages] == [
        ("apt", "curl", None),
        ("apt", "git", None),
        ("apt", "htop", None),
        ("apt", "nginx", "1.22*"),
        ("apt", "vim", None),
        ("pip", "flask", "==3.0.0"),
        ("pip", "git", None),
    ]
    summary = (await user_client.http.get("/api/package-buckets")).json()["items"][0]
    assert summary["package_count"] == 7


async def test_list_import_and_removal(user_client: UserClient) -> None:
    bucket = await make_bucket(user_client)
    path = f"/api/package-buckets/{bucket['id']}"
    packages = [
        {"name": "express", "manager": "npm", "version": "^4.18.0"},
        {"name": "@types/node", "manager": "npm"},
        {"name": "express", "manager": "npm", "version": "5"},
        {"name": "requests", "manager": "pip", "version": "2.31.0"},
    ]
    response = await user_client.http.post(f"{path}/packages", json={"packages": packages})
    assert response.json() == {"imported": 3, "skipped": 1}
    stored = (await user_client.http.get(path)).json()["packages"]
    assert [(p["name"], p["version"]) for p in stored] == [
        ("@types/node", None),
        ("express", "^4.18.0"),
        ("requests", "==2.31.0"),
    ]
    removed = await user_client.http.delete(f"{path}/packages/{stored[0]['id']}")
    assert removed.status_code == 204
    assert [p["name"] for p in (await user_client.http.get(path)).json()["packages"]] == ["express", "requests"]
    assert_problem(await user_client.http.delete(f"{path}/packages/{stored[0]['id']}"), 404, "not_found")

    other = await make_bucket(user_client, "other")
    misplaced = await user_client.http.delete(f"/api/package-buckets/{other['id']}/packages/{stored[1]['id']}")
    assert_problem(misplaced, 404, "not_found")


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"manager": "apt", "text": "curl\n$(reboot)\ngit; rm -rf /\nok-pkg\n"}, ["text", "text"]),
        (
            {"packages": [{"name": "`id`", "manager": "apt"}, {"name": "x", "manager": "pip", "version": "1 2"}]},
            ["packages.0.name", "packages.1.version"],
        ),
        ({"text": "curl"}, ["manager"]),
        ({}, ["packages"]),
        ({"packages": [], "manager": "apt", "text": "curl"}, ["packages"]),
        ({"packages": [{"name": "curl", "manager": "apt"}], "manager": "apt"}, ["manager"]),
    ],
)
async def test_invalid_imports_change_nothing(
    user_client: UserClient, payload: dict[str, Any], fields: list[str]
) -> None:
    bucket = await make_bucket(user_client)
    response = await user_client.http.post(f"/api/package-buckets/{bucket['id']}/packages", json=payload)
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == fields
    assert (await user_client.http.get(f"/api/package-buckets/{bucket['id']}")).json()["packages"] == []


async def test_import_errors_name_the_line(user_client: UserClient) -> None:
    bucket = await make_bucket(user_client)
    text = "curl\n# fine\n$(reboot)\n"
    response = await user_client.http.post(
        f"/api/package-buckets/{bucket['id']}/packages", json={"manager": "apt", "text": text}
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["message"].startswith("line 3: invalid apt package name")


@pytest.mark.parametrize("name", ["; rm -rf /", "$(id)", "../../etc/passwd", "a\nb", "it's", "a b", ""])
async def test_hostile_bucket_names(user_client: UserClient, name: str) -> None:
    response = await user_client.http.post("/api/package-buckets", json={"name": name})
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"][0]["field"] == "name"
