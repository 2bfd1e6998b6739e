"""`/api/templates`: the template library (shared filesystem templates + your own) and directory discovery."""

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.di import Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import CurrentUser
from infrahaus_api.idempotency import Idempotency
from infrahaus_domain.models.templates import TemplateSource
from infrahaus_domain.settings import Settings
from infrahaus_domain.templates.discovery import discover
from infrahaus_domain.templates.schemas import BucketCopy, DiscoveryReport, TemplatePage, TemplateRead, TemplateWrite
from infrahaus_domain.templates.service import TemplateService, to_read

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size (default 50, at most 500).")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]
Search = Annotated[str | None, QueryParameter(max_length=200, description="Text searched in name and description.")]
Tag = Annotated[str | None, QueryParameter(max_length=64, description="Only templates carrying this tag.")]
Source = Annotated[TemplateSource | None, QueryParameter(description="Only `filesystem` or only `custom` templates.")]


def provide_template_service(db_session: AsyncSession) -> TemplateService:
    return TemplateService(db_session)


class TemplateController(Controller):
    path = "/templates"
    tags = ["templates"]
    dependencies = {"templates": Provide(provide_template_service, sync_to_thread=False)}

    @get("", operation_id="listTemplates", summary="List templates (shared filesystem templates and your own)")
    async def list_templates(
        self,
        current_user: CurrentUser,
        templates: TemplateService,
        q: Search = None,
        tag: Tag = None,
        source: Source = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> TemplatePage:
        return await templates.list_page(current_user.id, q=q, tag=tag, source=source, limit=limit, cursor=cursor)

    @post("", operation_id="createTemplate", summary="Create a custom template")
    async def create_template(
        self,
        current_user: CurrentUser,
        templates: TemplateService,
        idempotency: Idempotency,
        data: JSONBody[TemplateWrite],
    ) -> Response[TemplateRead]:
        if replay := await idempotency.replay(data):
            return replay
        template = await templates.create_custom(current_user.id, data)
        location = f"/api/templates/{template.id}"
        return await idempotency.record(Response(to_read(template), status_code=201, headers={"Location": location}))

    @post(
        "/discover",
        operation_id="discoverTemplates",
        summary="Sync the server's templates directory into the library",
        description="Creates, updates or removes filesystem templates; a broken template is reported in `errors` "
        "and keeps its last good version. Re-running on an unchanged directory changes nothing.",
        status_code=200,
    )
    async def discover_templates(self, templates: TemplateService, settings: Settings) -> DiscoveryReport:
        return await discover(templates, settings.templates_dir)

    @get("/{template_id:uuid}", operation_id="getTemplate", summary="Get a template with its scripts, files, packages")
    async def get_template(
        self, current_user: CurrentUser, templates: TemplateService, template_id: FromPath[uuid.UUID]
    ) -> TemplateRead:
        return to_read(await templates.get_visible(current_user.id, template_id))

    @put(
        "/{template_id:uuid}",
        operation_id="replaceTemplate",
        summary="Replace a custom template and all its children (atomically)",
    )
    async def replace_template(
        self,
        current_user: CurrentUser,
        templates: TemplateService,
        template_id: FromPath[uuid.UUID],
        data: JSONBody[TemplateWrite],
    ) -> TemplateRead:
        return to_read(await templates.replace(current_user.id, template_id, data))

    @delete("/{template_id:uuid}", operation_id="deleteTemplate", summary="Delete a custom template")
    async def delete_template(
        self, current_user: CurrentUser, templates: TemplateService, template_id: FromPath[uuid.UUID]
    ) -> None:
        await templates.delete_custom(current_user.id, template_id)

    @post(
        "/{template_id:uuid}/packages/from-bucket",
        operation_id="addTemplatePackagesFromBucket",
        summary="Copy a package bucket's packages into a custom template (existing ones are kept)",
        status_code=200,
    )
    async def add_packages_from_bucket(
        self,
        current_user: CurrentUser,
        templates: TemplateService,
        template_id: FromPath[uuid.UUID],
        data: JSONBody[BucketCopy],
    ) -> TemplateRead:
        return to_read(await templates.add_packages_from_bucket(current_user.id, template_id, data.bucket_id))
