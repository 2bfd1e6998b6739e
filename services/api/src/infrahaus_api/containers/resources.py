"""What the container endpoints need beyond the core resources: the job queue, the progress log buffer, the probe."""

import logging
from dataclasses import dataclass

import dramatiq

from infrahaus_api.jobs import DramatiqJobQueue, build_broker
from infrahaus_domain.containers.probe import ProxmoxNodeProbe
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.events.logbuffer import LogBuffer, LogStore, RedisLogStore, build_log_store
from infrahaus_domain.jobs import JobQueue
from infrahaus_domain.ports import Ports
from infrahaus_domain.settings import Settings

logger = logging.getLogger("infrahaus.api.containers")


@dataclass
class ContainerResources:
    """Per-app-instance: `job_queue` is None only when no broker exists (operations then wait for the reconciler)."""

    job_queue: JobQueue | None
    logbuffer: LogBuffer
    probe: ProxmoxNodeProbe
    broker: dramatiq.Broker | None
    owns_broker: bool

    async def close(self) -> None:
        if isinstance(self.logbuffer.store, RedisLogStore):
            await self.logbuffer.store.aclose()
        if self.owns_broker and self.broker is not None:
            self.broker.close()


def build_container_resources(
    settings: Settings,
    ports: Ports,
    box: SecretBox,
    *,
    broker: dramatiq.Broker | None = None,
    log_store: LogStore | None = None,
) -> ContainerResources:
    """Injected `broker`/`log_store` win (the embedded mode shares them with its worker threads; tests inspect them)."""
    owns_broker = broker is None
    if broker is None:
        broker = build_broker(settings)
    if broker is None:
        logger.warning("no job broker configured: operations stay queued until a worker's reconciler sends them")
    return ContainerResources(
        job_queue=DramatiqJobQueue(broker) if broker is not None else None,
        logbuffer=LogBuffer(log_store or build_log_store(settings.redis_url, settings.redis_prefix), ports.events),
        probe=ProxmoxNodeProbe(box),
        broker=broker,
        owns_broker=owns_broker,
    )
