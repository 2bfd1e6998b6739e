"""Conditional requests: strong ETags on single resources, weak ones on lists and counts, `If-None-Match` -> 304,
`Cache-Control` that lets a browser revalidate but no shared cache keep anything, and `no-store` where secrets show."""

from typing import Any

from infrahaus_api.etag import etag_of, matches
from tests.fixtures.api import SessionClient, UserClient


async def test_a_single_resource_has_a_strong_tag_and_answers_304_while_unchanged(
    user_client: UserClient, registered_node: dict[str, Any]
) -> None:
    url = f"/api/nodes/{registered_node['id']}"
    first = await user_client.http.get(url)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"')
    assert tag == etag_of(first.content, weak=False)  # the hash of exactly the bytes sent
    assert first.headers["cache-control"] == "private, no-cache"

    same = await user_client.http.get(url, headers={"If-None-Match": tag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == tag
    assert "content-type" not in same.headers
    assert same.headers["x-request-id"]
    # Any of several tags, and `*`, match; another tag does not.
    assert (await user_client.http.get(url, headers={"If-None-Match": f'"other", {tag}'})).status_code == 304
    assert (await user_client.http.get(url, headers={"If-None-Match": "*"})).status_code == 304
    assert (await user_client.http.get(url, headers={"If-None-Match": '"other"'})).status_code == 200

    renamed = await user_client.http.patch(url, json={"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    changed = await user_client.http.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag
    assert changed.json()["name"] == "renamed"


async def test_lists_have_weak_tags(user_client: UserClient, registered_node: dict[str, Any]) -> None:
    listed = await user_client.http.get("/api/nodes")
    tag = listed.headers["etag"]
    assert tag.startswith('W/"')
    assert (await user_client.http.get("/api/nodes", headers={"If-None-Match": tag})).status_code == 304
    # If-None-Match compares weakly: the same tag without `W/` matches too.
    assert (await user_client.http.get("/api/nodes", headers={"If-None-Match": tag[2:]})).status_code == 304
    summary = await user_client.http.get("/api/containers/summary")
    assert summary.headers["etag"].startswith('W/"')


async def test_errors_and_secrets_are_never_tagged(
    user_client: UserClient,
    other_user_client: UserClient,
    session_client: SessionClient,
    registered_node: dict[str, Any],
) -> None:
    missing = await user_client.http.get("/api/nodes/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "etag" not in missing.headers
    me = await user_client.http.get("/api/auth/me")
    assert "etag" not in me.headers
    assert "no-store" in me.headers["cache-control"]
    token = await session_client.http.post("/api/auth/tokens", json={"name": "ci"})
    assert token.status_code == 201
    assert "no-store" in token.headers["cache-control"]
    assert "etag" not in token.headers
    # A tag is a hash of one user's answer: sent by another user (who has no nodes), it matches nothing.
    mine = await user_client.http.get("/api/nodes")
    theirs = await other_user_client.http.get("/api/nodes", headers={"If-None-Match": mine.headers["etag"]})
    assert theirs.status_code == 200
    assert theirs.json()["items"] == []


def test_weak_comparison() -> None:
    assert matches('W/"a"', '"a"')
    assert matches('"a"', 'W/"a"')
    assert matches(' "b" , W/"a"', '"a"')
    assert not matches('"b"', '"a"')
