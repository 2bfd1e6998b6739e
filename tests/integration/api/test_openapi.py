"""The OpenAPI document: committed and current, stable operation ids and tags, errors documented as problems."""

import json
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar

from infrahaus.commands.openapi import current_schema
from infrahaus_api.openapi import schema_json

COMMITTED = Path(__file__).parents[3] / "openapi" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op) for path, item in schema["paths"].items() for method, op in item.items() if method in METHODS
    ]


def test_committed_schema_is_current() -> None:
    assert COMMITTED.exists(), "openapi/openapi.json is missing: run `make openapi`"
    assert COMMITTED.read_text() == current_schema(), "openapi/openapi.json is out of date: run `make openapi`"


def test_schema_is_deterministic(app: Litestar) -> None:
    assert schema_json(app) == current_schema()
    text = current_schema()
    assert text.endswith("}\n")
    assert text.startswith('{\n  "components"')


def test_every_operation_has_an_id_tags_and_problem_responses() -> None:
    schema = json.loads(current_schema())
    operations = _operations(schema)
    ids = [str(op.get("operationId") or "") for _, _, op in operations]
    assert all(ids), [f"{m} {p}" for m, p, op in operations if not op.get("operationId")]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for method, path, op in operations:
        assert op.get("tags"), f"{method} {path} has no tag"
        assert op["operationId"][0].islower(), op["operationId"]
        assert "_" not in op["operationId"], op["operationId"]
        for status in ("400", "401", "403", "404", "409", "422"):
            content = op["responses"][status]["content"]
            assert content == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
    problem = schema["components"]["schemas"]["ProblemDetail"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])


def test_public_operations_are_documented_as_public(app: Litestar) -> None:
    schema = json.loads(current_schema())
    assert schema["security"] == [{"bearerToken": []}, {"sessionCookie": []}]
    operations = _operations(schema)
    documented_public = {(m.upper(), p) for m, p, op in operations if op.get("security") == [{}]}
    # Under /api only login is public (the same set the auth middleware skips, see test_matrix); outside it,
    # health and metrics are.
    assert {(m, p) for m, p in documented_public if p.startswith("/api/")} == {("POST", "/api/auth/login")}
    assert {(m.upper(), p) for m, p, _ in operations if not p.startswith("/api/")} <= documented_public


async def test_schema_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/schema/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "infrahaus"


def test_summaries_are_short_and_explanations_go_to_the_description() -> None:
    for method, path, op in _operations(json.loads(current_schema())):
        summary = op.get("summary", "")
        assert summary, f"{method} {path} has no summary"
        assert len(summary) <= 60, f"{op['operationId']}: summary too long, move the detail to `description`"
        assert not summary.endswith("."), op["operationId"]


def test_request_defaults_are_optional_and_response_fields_required() -> None:
    schemas = json.loads(current_schema())["components"]["schemas"]
    # A `default` would make openapi-typescript require the field; the default is given in words instead.
    login = schemas["LoginRequest"]
    assert "realm" not in login["required"]
    assert "default" not in login["properties"]["realm"]
    assert '`"pam"`' in login["properties"]["realm"]["description"]
    create = schemas["ContainerCreate"]
    assert create["required"] == ["hostname"]
    assert all("default" not in p for p in create["properties"].values())
    # Output structs always send every field.
    assert set(schemas["LogLine"]["required"]) == set(schemas["LogLine"]["properties"])
    assert set(schemas["EventRead"]["required"]) == set(schemas["EventRead"]["properties"])
    # Omitted when empty: not required.
    assert "errors" not in schemas["ProblemDetail"]["required"]


def test_codes_kinds_and_event_types_are_enums() -> None:
    schemas = json.loads(current_schema())["components"]["schemas"]
    assert "invalid_credentials" in schemas["ProblemDetail"]["properties"]["code"]["enum"]
    assert "unauthenticated" in schemas["ProblemDetail"]["properties"]["code"]["enum"]
    assert "required" in schemas["FieldError"]["properties"]["code"]["enum"]
    assert "worker_lost" in schemas["OperationError"]["properties"]["code"]["enum"]
    assert "delete" in schemas["OperationRead"]["properties"]["kind"]["enum"]
    types = schemas["EventRead"]["properties"]["type"]["enum"]
    assert {"queued", "step", "created", "failed", "deleted"} <= set(types)
    assert "error" not in types  # a browser would take an event named `error` for a dropped connection
    assert schemas["LogLine"]["properties"]["type"]["const"] == "log"
    assert schemas["ProgressDone"]["properties"]["type"]["const"] == "done"


def test_streams_document_their_items_and_every_response_its_headers() -> None:
    schema = json.loads(current_schema())
    progress = schema["paths"]["/api/containers/{container_id}/progress"]["get"]["responses"]
    assert progress["200"]["content"]["text/event-stream"]["schema"] == {
        "$ref": "#/components/schemas/ContainerProgressItem"
    }
    assert "204" in progress
    items = schema["components"]["schemas"]["ContainerProgressItem"]["oneOf"]
    assert [i["$ref"].rsplit("/", 1)[1] for i in items] == ["EventRead", "LogLine", "ProgressDone"]
    events = schema["paths"]["/api/events/stream"]["get"]
    assert events["responses"]["200"]["content"]["text/event-stream"]["schema"] == {
        "$ref": "#/components/schemas/EventRead"
    }
    assert {p["name"] for p in events["parameters"]} >= {"container_id", "node_id", "type", "after", "Last-Event-ID"}

    for method, path, op in _operations(schema):
        for status, response in op["responses"].items():
            headers = response.get("headers", {})
            assert "X-Request-ID" in headers, f"{method} {path} {status}"
            if status == "202":
                assert "Location" in headers, f"{method} {path}"
            if status == "429":
                assert "Retry-After" in headers, f"{method} {path}"
    # Readable JSON resources are conditional; streams and answers with secrets are not.
    uncached = {"getCurrentUser", "revealServiceCredentials", "streamContainerProgress", "streamEvents"}
    for method, path, op in _operations(schema):
        if method != "get" or not path.startswith("/api/") or path.startswith("/api/schema"):
            continue
        conditional = "304" in op["responses"]
        assert conditional == (op["operationId"] not in uncached), op["operationId"]
        if conditional:
            assert "ETag" in op["responses"]["200"]["headers"]
            assert "If-None-Match" in [p["name"] for p in op["parameters"]]
