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
