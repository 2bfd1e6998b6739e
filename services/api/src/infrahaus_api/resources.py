"""Per-app-instance resources, built in `create_app()` and reached through `app.state.resources`."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from litestar.stores.base import Store
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.ports import Ports
from infrahaus_domain.settings import Settings

ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass
class AppResources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    ports: Ports
    secret_box: SecretBox
    session_store: Store
    # name -> check raising on failure; `/health/ready` runs them all (feature parts add e.g. "broker").
    readiness_checks: dict[str, ReadinessCheck] = field(default_factory=dict)
