"""Every dependency a handler can ask for, registered once on the app: declare a parameter by its name.

`resources` (the process's `AppResources`), `settings`, `services` (the request's `Services`) and each domain
service by name (`containers`, `creation`, `nodes`, ...), plus `current_user`, `auth_info`, `idempotency`,
`dispatch` and `sender`. The request's session (`db_session`) commits on a 2xx answer.
"""

from typing import Any

from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_api.auth import provide_auth_info, provide_current_user
from infrahaus_api.idempotency import provide_dispatch, provide_idempotency, provide_sender
from infrahaus_api.resources import AppResources
from infrahaus_domain.services import Services

# The domain services a handler may ask for by name (attributes of `Services`).
SERVICE_NAMES = (
    "events",
    "operations",
    "containers",
    "creation",
    "preflight",
    "placement",
    "listing",
    "catalog",
    "day_two",
    "batches",
    "vmids",
    "nodes",
    "templates",
    "buckets",
    "users",
    "tokens",
    "webhooks",
)


def _service(name: str) -> Provide:
    def provide(services: Services) -> Any:
        return getattr(services, name)

    return Provide(provide, sync_to_thread=False)


def dependencies(resources: AppResources) -> dict[str, Provide]:
    """The app's dependency map for this process's `resources`."""

    def provide_services(db_session: AsyncSession) -> Services:
        return resources.services(db_session)

    return {
        "resources": Provide(lambda: resources, sync_to_thread=False, use_cache=True),
        "settings": Provide(lambda: resources.settings, sync_to_thread=False, use_cache=True),
        "services": Provide(provide_services, sync_to_thread=False),
        **{name: _service(name) for name in SERVICE_NAMES},
        "current_user": Provide(provide_current_user, sync_to_thread=False),
        "auth_info": Provide(provide_auth_info, sync_to_thread=False),
        "idempotency": Provide(provide_idempotency, sync_to_thread=False),
        "sender": Provide(provide_sender, sync_to_thread=False),
        "dispatch": Provide(provide_dispatch, sync_to_thread=False),
    }
