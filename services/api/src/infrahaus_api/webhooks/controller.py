"""`/api/webhooks`: signed webhooks (Standard Webhooks), their secrets (shown once) and their deliveries."""

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from infrahaus_api.auth import CurrentUser
from infrahaus_api.errors import problem_response, problem_spec
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.pagination import Cursor, Limit
from infrahaus_api.users.controller import NO_STORE
from infrahaus_domain.webhooks.schemas import (
    DeliveryPage,
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
)
from infrahaus_domain.webhooks.service import WebhookService

URL_RESPONSES = {
    422: problem_spec(
        "Validation failed; also `outbound_denied` (the server's outbound policy refuses the URL's address)"
    )
}


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]

    @post(
        "",
        operation_id="createWebhook",
        summary="Register a webhook (its secret shown once)",
        description=(
            "Deliveries are POSTed to `url` signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
            "`webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`) with the `whsec_` secret in this "
            "answer, which is stored encrypted and never shown again (rotate it to get a new one). A retry with the "
            "same `Idempotency-Key` is a 409 `secret_shown_once` naming the webhook already created."
        ),
        responses={**URL_RESPONSES, 409: problem_spec("`secret_shown_once`: a retry of a creation already answered")},
        cache_control=NO_STORE,
    )
    async def create_webhook(
        self,
        current_user: CurrentUser,
        webhooks: WebhookService,
        idempotency: Idempotency,
        data: JSONBody[WebhookCreate],
    ) -> Response[WebhookCreated]:
        if replay := await idempotency.replay(data):
            return replay
        created = await webhooks.register(current_user.id, data)
        shown_once = problem_response(
            409,
            "secret_shown_once",
            f"Webhook {created.id} was already created with this Idempotency-Key and its secret shown once; rotate "
            f"it (POST /api/webhooks/{created.id}/rotate-secret) if the secret was lost.",
        )
        headers = {"Location": f"/api/webhooks/{created.id}"}
        return await idempotency.record(Response(created, status_code=201, headers=headers), replay_as=shown_once)

    @get("", operation_id="listWebhooks", summary="List your webhooks", opt=ETAG_WEAK)
    async def list_webhooks(
        self, current_user: CurrentUser, webhooks: WebhookService, limit: Limit = 50, cursor: Cursor = None
    ) -> WebhookPage:
        return await webhooks.page(current_user.id, limit=limit, cursor=cursor)

    @get("/{webhook_id:uuid}", operation_id="getWebhook", summary="Get a webhook", opt=ETAG_STRONG)
    async def get_webhook(
        self, current_user: CurrentUser, webhooks: WebhookService, webhook_id: FromPath[uuid.UUID]
    ) -> WebhookRead:
        return await webhooks.read(current_user.id, webhook_id)

    @patch(
        "/{webhook_id:uuid}",
        operation_id="updateWebhook",
        summary="Update a webhook",
        description="A new `url` is checked against the outbound policy; `enabled: false` holds deliveries back.",
        responses=URL_RESPONSES,
    )
    async def update_webhook(
        self,
        current_user: CurrentUser,
        webhooks: WebhookService,
        webhook_id: FromPath[uuid.UUID],
        data: JSONBody[WebhookUpdate],
    ) -> WebhookRead:
        return await webhooks.change(current_user.id, webhook_id, data)

    @delete("/{webhook_id:uuid}", operation_id="deleteWebhook", summary="Delete a webhook and its deliveries")
    async def delete_webhook(
        self, current_user: CurrentUser, webhooks: WebhookService, webhook_id: FromPath[uuid.UUID]
    ) -> None:
        await webhooks.remove(current_user.id, webhook_id)

    @post(
        "/{webhook_id:uuid}/test",
        operation_id="testWebhook",
        summary="Send a test delivery",
        description="202: a `webhook.test` delivery is queued; follow it in the deliveries log.",
        status_code=202,
        responses=URL_RESPONSES,
    )
    async def test_webhook(
        self, current_user: CurrentUser, webhooks: WebhookService, webhook_id: FromPath[uuid.UUID]
    ) -> DeliveryRead:
        return await webhooks.test(current_user.id, webhook_id)

    @post(
        "/{webhook_id:uuid}/rotate-secret",
        operation_id="rotateWebhookSecret",
        summary="Replace a webhook's secret (shown once)",
        description="Every attempt from now on, retries of older deliveries included, is signed with the new secret.",
        status_code=200,
        cache_control=NO_STORE,
    )
    async def rotate_webhook_secret(
        self, current_user: CurrentUser, webhooks: WebhookService, webhook_id: FromPath[uuid.UUID]
    ) -> WebhookSecret:
        return await webhooks.rotate_secret(current_user.id, webhook_id)

    @get(
        "/{webhook_id:uuid}/deliveries",
        operation_id="listWebhookDeliveries",
        summary="List a webhook's deliveries",
        description="Newest first: status, attempts (each with its time, answer code and latency), next attempt.",
        opt=ETAG_WEAK,
    )
    async def list_deliveries(
        self,
        current_user: CurrentUser,
        webhooks: WebhookService,
        webhook_id: FromPath[uuid.UUID],
        status: Annotated[DeliveryStatus | None, QueryParameter(description="Only deliveries in this state.")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> DeliveryPage:
        return await webhooks.deliveries(current_user.id, webhook_id, status=status, limit=limit, cursor=cursor)
