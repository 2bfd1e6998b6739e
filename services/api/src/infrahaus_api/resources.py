"""The API process's resources: built once in `create_app()`, reached by handlers only through dependency
injection (`resources`, `services` and the single services in `deps.py`)."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infrahaus_api.db import read_only_sessionmaker
from infrahaus_api.jobs import DramatiqJobQueue, build_broker
from infrahaus_domain.containers.inventory import LiveInventory
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.db import create_engine
from infrahaus_domain.events.logbuffer import LogBuffer, LogStore, RedisLogStore, build_log_store
from infrahaus_domain.jobs import JobQueue
from infrahaus_domain.nodes.connection import NodeAccess
from infrahaus_domain.nodes.list_cache import NodeListCache, node_list_watch
from infrahaus_domain.ports import build_ports
from infrahaus_domain.ports.local_cache import LocalCache
from infrahaus_domain.services import ProcessResources
from infrahaus_domain.settings import Settings

logger = logging.getLogger("infrahaus.api")

ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass(kw_only=True)
class AppResources(ProcessResources):
    """One per app instance. `job_queue` is None only when no broker exists (operations then wait for the
    reconciler); `broker` is closed here only when this app built it."""

    engine: AsyncEngine
    session_store: Store
    job_queue: JobQueue | None
    broker: dramatiq.Broker | None
    owns_broker: bool
    # Sessions and bearer tokens this process verified recently (`infrahaus_api.auth`), invalidated everywhere.
    session_cache: LocalCache[Any]
    token_cache: LocalCache[Any]
    # Each user's encoded node list (`GET /api/nodes`), dropped everywhere when a commit changes it.
    node_lists: NodeListCache
    # Sessions without a transaction that refuse to write (`infrahaus_api.db`), for reads outside `db_session`.
    read_sessionmaker: async_sessionmaker[AsyncSession]
    # name -> check raising on failure; `/health/ready` runs them all (feature parts add e.g. "broker").
    readiness_checks: dict[str, ReadinessCheck] = field(default_factory=dict)

    async def close(self) -> None:
        if self.inventory is not None:
            await self.inventory.aclose()
        if isinstance(self.logbuffer.store, RedisLogStore):
            await self.logbuffer.store.aclose()
        if self.owns_broker and self.broker is not None:
            self.broker.close()
        await self.ports.close()
        await self.engine.dispose()


def build_resources(
    settings: Settings, *, broker: dramatiq.Broker | None = None, log_store: LogStore | None = None
) -> AppResources:
    """Everything the API shares between requests. An injected `broker`/`log_store` wins (the embedded mode shares
    them with its worker threads; tests inspect them)."""
    engine = create_engine(settings.database.url)
    ports = build_ports(settings.redis.url, settings.redis.prefix)
    box = SecretBox(settings.encryption.keys)
    owns_broker = broker is None
    # Imported here: auth.py builds on this module.
    from infrahaus_api.auth import AUTH_CACHE_SECONDS, SESSION_TOPIC, TOKEN_TOPIC
    from infrahaus_domain.users.accounts import ACCOUNT_TOPIC

    if broker is None:
        broker = build_broker(settings)
    if broker is None:
        logger.warning("no job broker configured: operations stay queued until a worker's reconciler sends them")
    return AppResources(
        settings=settings,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False, info=node_list_watch(ports.invalidation)),
        ports=ports,
        box=box,
        logbuffer=LogBuffer(log_store or build_log_store(settings.redis.url, settings.redis.prefix), ports.events),
        # Pooled node clients; per-node answers cached in the Cache port.
        inventory=LiveInventory(
            NodeAccess.build(box, settings.outbound, None),
            ports.cache,
            timeout=settings.inventory.node_timeout,
            cache_ttl=settings.inventory.cache_seconds,
            invalidation=ports.invalidation,
        ),
        session_store=_session_store(settings),
        job_queue=DramatiqJobQueue(broker) if broker is not None else None,
        broker=broker,
        owns_broker=owns_broker,
        # An account found disabled drops every cached session and token (`infrahaus_domain.users.accounts`).
        session_cache=LocalCache(
            ports.invalidation, SESSION_TOPIC, ttl=AUTH_CACHE_SECONDS, cleared_by=(ACCOUNT_TOPIC,)
        ),
        token_cache=LocalCache(ports.invalidation, TOKEN_TOPIC, ttl=AUTH_CACHE_SECONDS, cleared_by=(ACCOUNT_TOPIC,)),
        node_lists=NodeListCache(ports.invalidation),
        read_sessionmaker=read_only_sessionmaker(engine),
    )


def _session_store(settings: Settings) -> Store:
    if settings.redis.url is None:
        return MemoryStore()
    # One client per app instance: redis-py asyncio clients belong to one event loop.
    return RedisStore(
        Redis.from_url(settings.redis.url), namespace=f"{settings.redis.prefix}sessions", handle_client_shutdown=True
    )
