"""All models, imported so that the metadata (migrations, truncation in tests, key rotation) sees every table.

Each aggregate adds its module import here.
"""

from infrahaus_domain.models.base import UUIDv7AuditBase, metadata
from infrahaus_domain.models.batches import Batch
from infrahaus_domain.models.containers import (
    Container,
    DiscoveredService,
    Event,
    Operation,
    ServiceCredential,
)
from infrahaus_domain.models.idempotency import IdempotencyKey
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.models.templates import (
    BucketPackage,
    PackageBucket,
    Template,
    TemplateFile,
    TemplatePackage,
    TemplateRevision,
    TemplateScript,
)
from infrahaus_domain.models.users import ApiToken, User
from infrahaus_domain.models.webhooks import Webhook, WebhookDelivery

__all__ = [
    "ApiToken",
    "Batch",
    "BucketPackage",
    "Container",
    "DiscoveredService",
    "Event",
    "IdempotencyKey",
    "Node",
    "Operation",
    "PackageBucket",
    "ServiceCredential",
    "Template",
    "TemplateFile",
    "TemplatePackage",
    "TemplateRevision",
    "TemplateScript",
    "UUIDv7AuditBase",
    "User",
    "VmidReservation",
    "Webhook",
    "WebhookDelivery",
    "metadata",
]
