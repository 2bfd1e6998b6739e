"""Entry module of production worker processes: ``dramatiq infrahaus_worker.main`` (via ``infrahaus worker``).

Importing it reads the settings from the environment, builds the Redis broker (with the worker
context middleware and the reconciler loop), makes it the global broker and declares every actor,
in that order: actors bind to a broker when they are declared.
"""

import os

import dramatiq

from infrahaus_domain.errors import SettingsError
from infrahaus_domain.jobs import broker_namespace
from infrahaus_domain.logs import configure_logging
from infrahaus_domain.settings import Settings
from infrahaus_worker.actors import register_actors
from infrahaus_worker.background import run_background
from infrahaus_worker.broker import build_redis_broker, install
from infrahaus_worker.context import WorkerContextMiddleware
from infrahaus_worker.observability import ActorLogContext
from infrahaus_worker.shutdown import DrainOnShutdown


def build_worker_broker(settings: Settings) -> dramatiq.Broker:
    """The production broker with every actor declared on it."""
    if settings.redis.url is None:
        raise SettingsError("INFRAHAUS_REDIS_URL", "the worker processes need Redis (the embedded mode runs its own)")
    broker = build_redis_broker(
        settings.redis.url,
        namespace=broker_namespace(settings.redis.prefix),
        extra=[
            WorkerContextMiddleware(settings, background=run_background),
            ActorLogContext(),
            DrainOnShutdown(settings.worker.drain_timeout),
        ],
        heartbeat_timeout_ms=int(settings.worker.timings.broker_heartbeat * 1000),
    )
    install(broker)
    register_actors(broker)
    return broker


settings = Settings.from_env(os.environ)
configure_logging(settings.logging.level, settings.logging.format)
broker = build_worker_broker(settings)
