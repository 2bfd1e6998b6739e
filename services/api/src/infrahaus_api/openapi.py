"""OpenAPI document: served at `/api/schema`, written to `openapi/openapi.json` by `infrahaus openapi`."""

import copy
import json
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import msgspec
from litestar import Litestar, Request

# Private path, but the class is the one Litestar itself uses for msgspec structs; subclassing keeps its output.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, Operation, RequestBody, Schema, SecurityScheme

from infrahaus_api.auth import SESSION_COOKIE


def openapi_config(*, docs_page: bool = False) -> OpenAPIConfig:
    """The document at `/api/schema` (JSON); with `docs_page`, Swagger UI at `/api/schema/swagger`, whose scripts
    Litestar loads from a CDN without integrity checks (off unless `INFRAHAUS_API_DOCS_PAGE` asks for it)."""
    plugins: list[OpenAPIRenderPlugin] = [ClientFriendlyJsonRenderPlugin(path=["/", "/openapi.json"])]
    if docs_page:
        plugins.append(SwaggerRenderPlugin())
    return OpenAPIConfig(
        title="infrahaus",
        version=version("infrahaus-api"),
        description="Control plane for LXC containers on Proxmox VE. Errors: application/problem+json + `code`.",
        path="/api/schema",
        render_plugins=plugins,
        use_handler_docstrings=False,
        create_examples=False,
        components=Components(
            security_schemes={
                "bearerToken": SecurityScheme(
                    type="http", scheme="bearer", description="A personal API token from POST /api/auth/tokens."
                ),
                "sessionCookie": SecurityScheme(
                    type="apiKey",
                    name=SESSION_COOKIE,
                    security_scheme_in="cookie",
                    description="Session cookie from POST /api/auth/login; unsafe methods also need X-CSRF-Token.",
                ),
            }
        ),
        security=[{"bearerToken": []}, {"sessionCookie": []}],
    )


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Struct schemas that generate good clients.

    - Input structs (those refusing unknown fields, `forbid_unknown_fields=True`) say so with
      `additionalProperties: false`; without it, generated clients and fuzzers assume extra members are accepted.
    - Their fields with a server default are optional and carry the default in words, not as `default`:
      openapi-typescript makes every property with a `default` required in a component (its `defaultNonNullable`),
      so a client would have to send what the server fills in itself.
    - Output structs always send every field (unless `omit_defaults=True`), so all their fields are `required`:
      generated types then need no checks for members that are always there.
    """

    def to_openapi_schema(self, field_definition: Any, schema_creator: Any) -> Any:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        config = getattr(field_definition.type_, "__struct_config__", None)
        if not isinstance(config, msgspec.structs.StructConfig):
            return schema
        properties = schema.properties or {}
        if config.forbid_unknown_fields:
            schema.additional_properties = False
            for member in properties.values():
                if isinstance(member, Schema) and member.default is not None:
                    shown = json.dumps(member.default, ensure_ascii=False)
                    member.description = " ".join(filter(None, [member.description, f"Default: `{shown}`."]))
                    member.default = None
        elif not config.omit_defaults:
            schema.required = sorted(properties)
        return schema


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose JSON body may be left out (`operation_class=` of a handler with `data: ... | None = None`).

    Litestar marks every request body required, so generated SDKs would insist on sending one.
    """

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


def schema_json(app: Litestar) -> str:
    """The app's OpenAPI document as deterministic JSON (sorted keys, 2-space indent, trailing newline)."""
    document = client_friendly(app.openapi_schema.to_schema())
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


class ClientFriendlyJsonRenderPlugin(JsonRenderPlugin):
    """Serves `/api/schema/openapi.json` exactly as `schema_json` writes it (`client_friendly` applied)."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, client_friendly(openapi_schema))


def client_friendly(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document as Litestar builds it, rearranged where generators would otherwise name things badly
    or lose them."""
    document = name_nullable_enums(document)
    name_stream_items(document)
    document_headers(document)
    return document


# Response headers, documented once and referenced from every response that carries them.
HEADERS: dict[str, dict[str, Any]] = {
    "XRequestId": {
        "description": "The request's id (yours when you sent a well-formed `X-Request-ID`); quote it in a report.",
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "Where the created resource, or the operation doing the work, can be read.",
        "schema": {"type": "string"},
    },
    "RetryAfter": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "ETag": {
        "description": "The representation's tag: send it as `If-None-Match` to get 304 while it is unchanged "
        '(strong `"…"` on one resource, weak `W/"…"` on lists and counts).',
        "schema": {"type": "string"},
    },
}
# 201 answers without a readable resource to point at (an API token's secret is shown once, nowhere else).
_NO_LOCATION = frozenset({"createApiToken"})
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "An `ETag` received before: the answer is 304 without a body while it still matches.",
    "schema": {"type": "string"},
}


def document_headers(document: dict[str, Any]) -> None:
    """Every response documents `X-Request-ID`; 201/202 `Location`, 429 `Retry-After`; operations that answer 304
    take `If-None-Match` and document `ETag` on their 200 (generated clients then type these headers)."""
    document.setdefault("components", {})["headers"] = HEADERS
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            conditional = "304" in responses
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = {"$ref": "#/components/headers/XRequestId"}
                if status == "202" or (status == "201" and operation.get("operationId") not in _NO_LOCATION):
                    headers["Location"] = {"$ref": "#/components/headers/Location"}
                if status == "429":
                    headers["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
                if conditional and status in ("200", "304"):
                    headers["ETag"] = {"$ref": "#/components/headers/ETag"}
            if conditional:
                operation.setdefault("parameters", []).append(dict(_IF_NONE_MATCH))


def name_stream_items(document: dict[str, Any]) -> None:
    """An event stream whose items are one of several schemas documents them as a named component
    (`streamContainerProgress` -> `ContainerProgressItem`), so a client can name the type of one `data:`."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            stream = content.get("text/event-stream")
            if stream is None or "oneOf" not in stream.get("schema", {}):
                continue
            name = str(operation["operationId"]).removeprefix("stream") + "Item"
            schemas[name] = {**stream["schema"], "title": name}
            stream["schema"] = {"$ref": f"#/components/schemas/{name}"}


def name_nullable_enums(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAPI document in which optional enums have shapes that SDK generators name well.

    Litestar documents `Literal[...] | None` as `{"type": ["null", "string"], "enum": [..., null]}`; generators
    turn that into several classes named `..._type_1`, `..._type_2_type_1`. A query parameter cannot carry a null
    (leaving it out means "any"), so it becomes a plain enum; a nullable body field becomes `oneOf` of a named enum
    component (`<Schema><Field>`, e.g. `VmidAvailabilityReason`) and null.
    """
    document = copy.deepcopy(document)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if isinstance(parameter.get("schema"), dict):
                    _drop_null_from_enum(parameter["schema"])
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for name, schema in list(schemas.items()):
        properties: dict[str, Any] = schema.get("properties", {})
        for field, member in properties.items():
            if not isinstance(member, dict) or None not in member.get("enum", ()):
                continue
            component = name + "".join(part.capitalize() for part in field.split("_"))
            named = {key: value for key, value in member.items() if key != "description"}
            _drop_null_from_enum(named)
            schemas[component] = {**named, "title": component}
            nullable: dict[str, Any] = {"oneOf": [{"$ref": f"#/components/schemas/{component}"}, {"type": "null"}]}
            if "description" in member:
                nullable["description"] = member["description"]
            properties[field] = nullable
    return document


def _drop_null_from_enum(schema: dict[str, Any]) -> None:
    if None not in schema.get("enum", ()):
        return
    values = [value for value in schema["enum"] if value is not None]
    schema["enum"] = values
    schema["type"] = "string" if all(isinstance(value, str) for value in values) else "integer"
