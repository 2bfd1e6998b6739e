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
from litestar.openapi.spec import Components, Operation, RequestBody, SecurityScheme

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
