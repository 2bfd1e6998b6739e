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
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, Operation, RequestBody, SecurityScheme

from infrahaus_api.auth import SESSION_COOKIE


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="infrahaus",
        version=version("infrahaus-api"),
        description="Control plane for LXC containers on Proxmox VE. Errors: application/problem+json + `code`.",
        path="/api/schema",
        render_plugins=[SwaggerRenderPlugin(), ClientFriendlyJsonRenderPlugin()],
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
    """Input structs that refuse unknown fields (`forbid_unknown_fields=True`) say so: `additionalProperties: false`.

    Without it, generated clients and schema-based fuzzers assume extra members are accepted.
    """

    def to_openapi_schema(self, field_definition: Any, schema_creator: Any) -> Any:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        config = getattr(field_definition.type_, "__struct_config__", None)
        if isinstance(config, msgspec.structs.StructConfig) and config.forbid_unknown_fields:
            schema.additional_properties = False
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
    document = name_nullable_enums(app.openapi_schema.to_schema())
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


class ClientFriendlyJsonRenderPlugin(JsonRenderPlugin):
    """Serves `/api/schema/openapi.json` exactly as `schema_json` writes it (with `name_nullable_enums` applied)."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, name_nullable_enums(openapi_schema))


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
