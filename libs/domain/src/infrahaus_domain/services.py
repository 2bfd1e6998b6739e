"""`Services`: every domain service over one session, wired the same way in the API and in the worker.

The API builds one per request (its session commits on a 2xx answer) and hands single services to handlers
through dependency injection; the worker builds one per unit of work (`WorkerContext.unit()`, which commits when
the block ends). Services are built on first use, so a request pays only for what it touches.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infrahaus_domain.batches.service import BatchService
from infrahaus_domain.buckets.service import PackageBucketService
from infrahaus_domain.containers.creation import ContainerCreationService
from infrahaus_domain.containers.guest_status import ProxmoxGuestStatus
from infrahaus_domain.containers.inventory import LiveInventory
from infrahaus_domain.containers.listing import ContainerListing
from infrahaus_domain.containers.placement import PlacementService
from infrahaus_domain.containers.preflight import PreflightService
from infrahaus_domain.containers.service import ContainerService
from infrahaus_domain.containers.service_catalog import ServiceCatalog
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.day_two.service import DayTwoService
from infrahaus_domain.events.logbuffer import LogBuffer
from infrahaus_domain.events.service import EventService
from infrahaus_domain.nodes.connection import NodeAccess
from infrahaus_domain.nodes.list_cache import published
from infrahaus_domain.nodes.service import NodeService
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.ports import Ports
from infrahaus_domain.settings import Settings
from infrahaus_domain.templates.revisions import RevisionService
from infrahaus_domain.templates.service import TemplateService
from infrahaus_domain.users.service import ApiTokenService, UserService
from infrahaus_domain.vmids.service import VmidService
from infrahaus_domain.webhooks.service import WebhookService


class Services:
    """The domain services of one unit of work. `inventory` (pooled node clients) exists in the API only."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: Settings,
        box: SecretBox,
        ports: Ports,
        logbuffer: LogBuffer,
        inventory: LiveInventory | None = None,
        access: NodeAccess | None = None,
    ) -> None:
        self.session = session
        # How nodes are reached (outbound policy, SSH host key pins); without pins when built outside a process.
        self.access = access or NodeAccess.build(box, settings.outbound, None)
        self.settings = settings
        self.box = box
        self.ports = ports
        self.logbuffer = logbuffer
        self.inventory = inventory

    @cached_property
    def events(self) -> EventService:
        return EventService(self.session, logbuffer=self.logbuffer)

    @cached_property
    def operations(self) -> OperationService:
        return OperationService(self.session, events=self.events)

    @cached_property
    def containers(self) -> ContainerService:
        return ContainerService(
            self.session,
            events=self.events,
            operations=self.operations,
            box=self.box,
            guest_status=ProxmoxGuestStatus(self.access),
        )

    @cached_property
    def creation(self) -> ContainerCreationService:
        return ContainerCreationService(
            self.session, containers=self.containers, operations=self.operations, vmids=self.vmids
        )

    @cached_property
    def preflight(self) -> PreflightService:
        return PreflightService(self.creation, self.access)

    @cached_property
    def placement(self) -> PlacementService:
        return PlacementService(self.creation, self.preflight, self.access)

    @cached_property
    def listing(self) -> ContainerListing:
        return ContainerListing(self.session, inventory=self._inventory(), containers=self.containers)

    @cached_property
    def catalog(self) -> ServiceCatalog:
        return ServiceCatalog(
            self.session,
            containers=self.containers,
            access=self.access,
            events=self.events,
            cache=self.ports.cache,
            reveal_limit=self.settings.credentials.reveal_limit,
            reveal_window=self.settings.credentials.reveal_window_seconds,
            ssh_timeout=self.settings.inventory.node_timeout * 5,
        )

    @cached_property
    def day_two(self) -> DayTwoService:
        return DayTwoService(
            self.session,
            containers=self.containers,
            operations=self.operations,
            access=self.access,
            cache=self.ports.cache,
            settings=self.settings.day_two,
            ssh_timeout=self.settings.inventory.node_timeout * 5,
        )

    @cached_property
    def batches(self) -> BatchService:
        return BatchService(
            self.session,
            containers=self.containers,
            operations=self.operations,
            day_two=lambda: self.day_two,
            inventory=self.inventory,
        )

    @cached_property
    def revisions(self) -> RevisionService:
        return RevisionService(session=self.session)

    @cached_property
    def vmids(self) -> VmidService:
        return VmidService(self.session, cache=self.ports.cache, access=self.access, lock=self.ports.lock)

    @cached_property
    def nodes(self) -> NodeService:
        return NodeService(
            self.session,
            access=self.access,
            cache=self.ports.cache,
            check_limit=self.settings.outbound.check_limit,
            check_window=self.settings.outbound.check_window_seconds,
        )

    @cached_property
    def templates(self) -> TemplateService:
        return TemplateService(self.session)

    @cached_property
    def buckets(self) -> PackageBucketService:
        return PackageBucketService(self.session)

    @cached_property
    def users(self) -> UserService:
        return UserService(self.session)

    @cached_property
    def tokens(self) -> ApiTokenService:
        return ApiTokenService(self.session)

    @cached_property
    def webhooks(self) -> WebhookService:
        return WebhookService(self.session, box=self.box, policy=self.access.policy, bus=self.logbuffer.bus)

    def _inventory(self) -> LiveInventory:
        if self.inventory is None:
            raise RuntimeError("the live inventory exists in the API process only")
        return self.inventory


@dataclass(kw_only=True)
class ProcessResources:
    """What one process builds once and every unit of work shares: the API's `AppResources` and the worker's
    `WorkerContext` both are one. Connections belong to the event loop they were built on."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    ports: Ports
    box: SecretBox
    logbuffer: LogBuffer
    inventory: LiveInventory | None = None

    @cached_property
    def access(self) -> NodeAccess:
        """How this process reaches nodes: its outbound policy, and SSH host keys pinned through `sessionmaker`."""
        return NodeAccess.build(self.box, self.settings.outbound, self.sessionmaker)

    def __deepcopy__(self, memo: dict[int, object]) -> "ProcessResources":
        # One per process: a framework copying what refers to it (Litestar deep-copies middleware options when it
        # registers routes) must get this object, not a second engine and connection pool.
        return self

    def services(self, session: AsyncSession) -> Services:
        """The domain services over `session` (the caller owns the session and its commit)."""
        return Services(
            session,
            settings=self.settings,
            box=self.box,
            ports=self.ports,
            logbuffer=self.logbuffer,
            inventory=self.inventory,
            access=self.access,
        )

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[Services]:
        """The domain services over one short unit of work that commits when the block ends without an error."""
        async with self.sessionmaker() as session:
            yield self.services(session)
            await session.commit()
            await published(session)
