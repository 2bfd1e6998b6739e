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
from infrahaus_worker.broker import build_redis_broker, install
from infrahaus_worker.context import WorkerContextMiddleware
from infrahaus_worker.observability import ActorLogContext
from infrahaus_worker.pipeline.plan import Limits
from infrahaus_worker.reconciler import reconcile_forever
from infrahaus_worker.shutdown import DrainOnShutdown, drain_timeout_from_env


def build_worker_broker(settings: Settings, limits: Limits) -> dramatiq.Broker:
    """The production broker with every actor declared on it."""
    if settings.redis_url is None:
        raise SettingsError("INFRAHAUS_REDIS_URL", "the worker processes need Redis (the embedded mode runs its own)")
    broker = build_redis_broker(
        settings.redis_url,
        namespace=broker_namespace(settings.redis_prefix),
        extra=[
            WorkerContextMiddleware(settings, limits=limits, background=reconcile_forever),
            ActorLogContext(),
            DrainOnShutdown(drain_timeout_from_env(os.environ)),
        ],
        heartbeat_timeout_ms=int(limits.broker_heartbeat * 1000),
    )
    install(broker)
    register_actors(broker)
    return broker


settings = Settings.from_env(os.environ)
configure_logging(settings.log_level, settings.log_format)
broker = build_worker_broker(settings, Limits.from_env(os.environ))
