"""`/api/templates`: the template library (shared filesystem templates + your own) and directory discovery."""

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter

from infrahaus_api.auth import CurrentUser
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.pagination import Cursor, Limit
from infrahaus_domain.models.templates import TemplateSource
from infrahaus_domain.settings import Settings
from infrahaus_domain.templates.discovery import discover
from infrahaus_domain.templates.schemas import (
    BucketCopy,
    DiscoveryReport,
    RevisionPage,
    RevisionRead,
    TemplatePage,
    TemplateRead,
    TemplateWrite,
)
from infrahaus_domain.templates.service import TemplateService, to_read

Search = Annotated[str | None, QueryParameter(max_length=200, description="Text searched in name and description.")]
Tag = Annotated[str | None, QueryParameter(max_length=64, description="Only templates carrying this tag.")]
Source = Annotated[TemplateSource | None, QueryParameter(description="Only `filesystem` or only `custom` templates.")]


class TemplateController(Controller):
    path = "/templates"
    tags = ["templates"]

    @get(
        "",
        operation_id="listTemplates",
        summary="List templates",
        description="The shared filesystem templates and your own.",
        opt=ETAG_WEAK,
    )
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

    @get(
        "/{template_id:uuid}",
        operation_id="getTemplate",
        summary="Get a template",
        description="With its scripts, files and packages.",
        opt=ETAG_STRONG,
    )
    async def get_template(
        self, current_user: CurrentUser, templates: TemplateService, template_id: FromPath[uuid.UUID]
    ) -> TemplateRead:
        return to_read(await templates.get_visible(current_user.id, template_id))

    @put(
        "/{template_id:uuid}",
        operation_id="replaceTemplate",
        summary="Replace a custom template",
        description=(
            "The template and all its scripts, files and packages are replaced in one step; unchanged "
            "children keep their ids."
        ),
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
        summary="Copy a bucket's packages into a template",
        description="Packages the custom template already has are kept.",
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

    @get(
        "/{template_id:uuid}/revisions",
        operation_id="listTemplateRevisions",
        summary="List a template's revisions",
        description="Newest first; every change records one. "
        "Each revision is an immutable, numbered snapshot of the whole template with its content digest, "
        "its author (`user`, `discovery` or `migration`) and how many containers reference it (created from it or "
        "synced to it; those are kept).",
        opt=ETAG_WEAK,
    )
    async def list_template_revisions(
        self,
        current_user: CurrentUser,
        templates: TemplateService,
        template_id: FromPath[uuid.UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> RevisionPage:
        template = await templates.get_visible(current_user.id, template_id)
        return await templates.revisions.page(template.id, limit=limit, cursor=cursor)

    @get(
        "/{template_id:uuid}/revisions/{number:int}",
        operation_id="getTemplateRevision",
        summary="Get one revision of a template",
        description="With the template's whole content as it was then.",
        opt=ETAG_STRONG,
    )
    async def get_template_revision(
        self,
        current_user: CurrentUser,
        templates: TemplateService,
        template_id: FromPath[uuid.UUID],
        number: Annotated[int, PathParameter(ge=1, le=999_999_999, description="The revision's number.")],
    ) -> RevisionRead:
        template = await templates.get_visible(current_user.id, template_id)
        return await templates.revisions.read(template.id, number)
