"""Template revisions: every change (API save, bucket copy, discovery re-sync) records an immutable, numbered revision
with its digest and author; a save that changes nothing records none; other users see none of them."""

from pathlib import Path
from typing import Any

from tests.fixtures.api import UserClient, assert_problem
from tests.integration.templates.test_templates_api import body, create, discover


async def revisions(client: UserClient, template_id: str, **params: Any) -> dict[str, Any]:
    response = await client.http.get(f"/api/templates/{template_id}/revisions", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_every_change_records_a_revision(user_client: UserClient) -> None:
    http = user_client.http
    created = await create(user_client)
    assert created["revision"] == 1
    first = await revisions(user_client, created["id"])
    assert [r["number"] for r in first["items"]] == [1]
    assert first["items"][0]["author"] == {"kind": "user", "user_id": str(user_client.user_id)}
    assert first["items"][0]["containers"] == 0

    # The same content again: no new revision.
    unchanged = await http.put(f"/api/templates/{created['id']}", json=body())
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json()["revision"] == 1

    changed = body()
    changed["files"][0]["content"] = "x=2\n"
    response = await http.put(f"/api/templates/{created['id']}", json=changed)
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 2

    page = await revisions(user_client, created["id"])
    assert [r["number"] for r in page["items"]] == [2, 1]
    assert page["items"][0]["digest"] != page["items"][1]["digest"]

    # Each revision keeps the content it was made with.
    old = (await http.get(f"/api/templates/{created['id']}/revisions/1")).json()
    new = (await http.get(f"/api/templates/{created['id']}/revisions/2")).json()
    assert old["content"]["files"][0]["content"] == "x=1\n"
    assert new["content"]["files"][0]["content"] == "x=2\n"
    assert new["content"]["scripts"][0]["name"] == "00-first"
    assert len(new["content"]["files"][0]["digest"]) == 64

    # Pagination, newest first.
    one = await revisions(user_client, created["id"], limit=1)
    assert [r["number"] for r in one["items"]] == [2]
    rest = await revisions(user_client, created["id"], limit=1, cursor=one["next_cursor"])
    assert [r["number"] for r in rest["items"]] == [1]
    assert rest["next_cursor"] is None

    assert_problem(await http.get(f"/api/templates/{created['id']}/revisions/3"), 404, "not_found")
    assert_problem(await http.get(f"/api/templates/{created['id']}/revisions/0"), 422, "validation_failed")


async def test_a_bucket_copy_records_a_revision(user_client: UserClient) -> None:
    http = user_client.http
    created = await create(user_client)
    bucket = await http.post("/api/package-buckets", json={"name": "tools"})
    assert bucket.status_code == 201, bucket.text
    added = await http.post(
        f"/api/package-buckets/{bucket.json()['id']}/packages",
        json={"packages": [{"name": "jq", "manager": "apt"}]},
    )
    assert added.status_code in (200, 201), added.text
    copied = await http.post(
        f"/api/templates/{created['id']}/packages/from-bucket", json={"bucket_id": bucket.json()["id"]}
    )
    assert copied.status_code == 200, copied.text
    assert copied.json()["revision"] == 2
    latest = (await http.get(f"/api/templates/{created['id']}/revisions/2")).json()
    assert [p["name"] for p in latest["content"]["packages"]] == ["curl", "flask", "jq"]


async def test_discovery_records_a_revision_per_changed_directory(
    user_client: UserClient, templates_root: Path
) -> None:
    await discover(user_client)
    listed = (await user_client.http.get("/api/templates", params={"q": "web-hello"})).json()["items"]
    template_id = listed[0]["id"]
    page = await revisions(user_client, template_id)
    assert [(r["number"], r["author"]["kind"]) for r in page["items"]] == [(1, "discovery")]

    # Re-running on an unchanged directory records nothing; a changed file makes revision 2.
    await discover(user_client)
    assert [r["number"] for r in (await revisions(user_client, template_id))["items"]] == [1]
    index = templates_root / "web-hello" / "container-configs" / "files" / "index.html"
    index.write_text(index.read_text() + "<p>changed</p>\n")
    report = await discover(user_client)
    assert report["updated"] == ["web-hello"]
    page = await revisions(user_client, template_id)
    assert [(r["number"], r["author"]["kind"]) for r in page["items"]] == [(2, "discovery"), (1, "discovery")]
    assert (await user_client.http.get(f"/api/templates/{template_id}")).json()["revision"] == 2


async def test_another_users_template_revisions_are_not_found(user_client: UserClient, make_user_client: Any) -> None:
    created = await create(user_client)
    other: UserClient = await make_user_client("other@pam")
    assert_problem(await other.http.get(f"/api/templates/{created['id']}/revisions"), 404, "not_found")
    assert_problem(await other.http.get(f"/api/templates/{created['id']}/revisions/1"), 404, "not_found")


async def test_deleting_a_template_removes_its_unreferenced_revisions(user_client: UserClient) -> None:
    created = await create(user_client)
    response = await user_client.http.delete(f"/api/templates/{created['id']}")
    assert response.status_code == 204, response.text
    assert_problem(await user_client.http.get(f"/api/templates/{created['id']}/revisions"), 404, "not_found")
