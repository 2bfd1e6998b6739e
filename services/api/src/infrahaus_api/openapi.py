"""OpenAPI document: served at `/api/schema`, written to `openapi/openapi.json` by `infrahaus openapi`."""

import json
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import msgspec
from litestar import Litestar

# Private path, but the class is the one Litestar itself uses for msgspec structs; subclassing keeps its output.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from infrahaus_api.auth import SESSION_COOKIE


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="infrahaus",
        version=version("infrahaus-api"),
        description="Control plane for LXC containers on Proxmox VE. Errors: application/problem+json + `code`.",
        path="/api/schema",
        render_plugins=[SwaggerRenderPlugin()],
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
    return json.dumps(app.openapi_schema.to_schema(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def name_nullable_enums(openapi: OpenAPI) -> None:
    """Give optional enums shapes that SDK generators name well, in place.

    Litestar documents `Literal[...] | None` as `{"type": ["null", "string"], "enum": [..., null]}`; generators
    turn that into several classes named `..._type_1`, `..._type_2_type_1`. A query parameter cannot carry a null
    (leaving it out means "any"), so it becomes a plain enum; a nullable body field becomes `oneOf` of a named enum
    component (`<Schema><Field>`, e.g. `VmidAvailabilityReason`) and null.
    """
    for path_item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(path_item, method)
            for parameter in (operation.parameters or []) if operation else []:
                if isinstance(parameter, Parameter) and isinstance(parameter.schema, Schema):
                    _drop_null_from_enum(parameter.schema)
    schemas = openapi.components.schemas if openapi.components and openapi.components.schemas else {}
    for name, schema in list(schemas.items()):
        for field, member in (schema.properties or {}).items():
            if not isinstance(member, Schema) or not member.enum or None not in member.enum:
                continue
            component = name + "".join(part.capitalize() for part in field.split("_"))
            named = Schema(title=component, enum=member.enum)
            _drop_null_from_enum(named)
            schemas[component] = named
            nullable = Schema(
                one_of=[Reference(ref=f"#/components/schemas/{component}"), Schema(type=OpenAPIType.NULL)]
            )
            nullable.description = member.description
            schema.properties[field] = nullable  # type: ignore[index]


def _drop_null_from_enum(schema: Schema) -> None:
    if not schema.enum or None not in schema.enum:
        return
    values = [value for value in schema.enum if value is not None]
    schema.enum = values
    schema.type = OpenAPIType.STRING if all(isinstance(v, str) for v in values) else OpenAPIType.INTEGER
