"""Containers, lifecycle and records: start/stop/shutdown/restart/delete/retry requests checked against the live
status, and what the worker records about a container (runtime facts, discovered services, removal).

Creation lives in `containers.creation`. Every request inserts a queued operation; the caller commits, and only
then sends the job message (see `infrahaus_domain.jobs`). Nothing here waits for Proxmox beyond short status reads.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.containers.errors import (
    ContainerBusyError,
    InvalidStateError,
)
from infrahaus_domain.containers.schemas import (
    ContainerBrief,
    ContainerSpec,
    NamedRef,
    ServiceInfo,
)
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import NotFoundError
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import (
    Container,
    DiscoveredService,
    Operation,
    ServiceCredential,
)
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.models.templates import Template
from infrahaus_domain.operations.schemas import OperationRead
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.reads import to_read
from infrahaus_domain.service_base import DomainService

DEFAULT_SHUTDOWN_TIMEOUT = 60


class GuestStatusReader(Protocol):
    """The live read the lifecycle rules need (implemented by `containers.guest_status.ProxmoxGuestStatus`)."""

    async def live_status(self, node: Node, vmid: int) -> str:
        """`running`, `stopped`, ... for the guest; raises a domain error when the node cannot be asked."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class ContainerRepository(SQLAlchemyAsyncRepository[Container]):
    model_type = Container


class ContainerService(DomainService[Container, ContainerRepository]):
    """Business rules of containers (write side). Never commits: the caller's unit of work does."""

    repository_type = ContainerRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        events: EventService,
        operations: OperationService,
        box: SecretBox | None = None,
        guest_status: GuestStatusReader | None = None,
    ) -> None:
        super().__init__(session)
        self.events = events
        self.operations = operations
        self.box = box
        self.guest_status = guest_status

    # ------------------------------------------------------------------ reads

    async def get_for_user(self, container_id: UUID, user_id: UUID) -> Container:
        """The user's container; another user's answers exactly like a missing one."""
        container = await self.session.get(Container, container_id)
        if container is None or container.user_id != user_id:
            raise NotFoundError("Container not found.")
        return container

    @staticmethod
    def spec(container: Container) -> ContainerSpec:
        """The stored creation spec of a container (what the worker creates and provisions)."""
        return msgspec.convert(container.request, ContainerSpec)

    async def brief(self, container: Container) -> ContainerBrief:
        node = await self.session.get(Node, container.node_id)
        template = await self.session.get(Template, container.template_id) if container.template_id else None
        return to_read(
            container,
            ContainerBrief,
            node=NamedRef(id=container.node_id, name=node.name if node else ""),
            template=NamedRef(id=template.id, name=template.name) if template else None,
        )

    # ------------------------------------------------------------------ lifecycle requests

    async def request_action(
        self,
        container_id: UUID,
        user_id: UUID,
        kind: str,
        *,
        params: dict[str, Any] | None = None,
    ) -> Operation:
        """Queue start, stop, shutdown or restart after checking the rules against the live status.

        start needs `stopped`; stop, shutdown and restart need `running` (else `InvalidStateError`); another active
        operation gives `ContainerBusyError` (decided by the database at insert).
        """
        container = await self.get_for_user(container_id, user_id)
        if container.lifecycle != "ready":
            raise InvalidStateError(f"The container is {container.lifecycle}; {kind} needs a ready container.")
        if await self.operations.active_for_container(container.id) is not None:
            raise ContainerBusyError("Another operation of this container is still queued or running.")
        node = await self.session.get(Node, container.node_id)
        if node is None:
            raise NotFoundError("Container not found.")
        if self.guest_status is None:
            raise RuntimeError("ContainerService needs a GuestStatusReader for lifecycle requests.")
        status = await self.guest_status.live_status(node, container.vmid)
        needed = "stopped" if kind == "start" else "running"
        if status != needed:
            raise InvalidStateError(f"The container is {status}; {kind} needs it {needed}.")
        return await self.operations.queue(container_id=container.id, user_id=user_id, kind=kind, params=params)

    async def request_delete(self, container_id: UUID, user_id: UUID) -> Operation:
        """Queue a delete from `ready`, `error` or `creating` (which cancels the creation in progress)."""
        container = await self.get_for_user(container_id, user_id)
        active = await self.operations.active_for_container(container.id)
        if active is not None:
            if active.kind != "create":
                raise ContainerBusyError("Another operation of this container is still queued or running.")
            await self.operations.cancel(active.id, reason="Cancelled by a delete request.")
        container.lifecycle = "deleting"
        await self.session.flush()
        return await self.operations.queue(container_id=container.id, user_id=user_id, kind="delete")

    async def request_retry(self, container_id: UUID, user_id: UUID) -> Operation:
        """Re-run a failed creation from the stored spec: a new `create` operation, lifecycle back to `creating`.

        The VMID reservation is kept; `pve_created_by_operation` still names the failed operation, so the worker
        knows a Proxmox container of this record may already exist.
        """
        container = await self.get_for_user(container_id, user_id)
        latest = await self.operations.latest_for_container(container.id)
        if container.lifecycle != "error" or latest is None or latest.kind != "create" or latest.status != "failed":
            raise InvalidStateError("Only a container whose creation failed can be retried.")
        op = await self.operations.queue(container_id=container.id, user_id=user_id, kind="create")
        container.lifecycle = "creating"
        container.last_error = None
        await self.session.flush()
        await self.events.record(
            container.id, "retried", "Creation retried.", {"previous_operation": str(latest.id)}, op.id
        )
        return op

    # ------------------------------------------------------------------ worker side

    async def set_lifecycle(
        self, container_id: UUID, lifecycle: str, *, last_error: dict[str, Any] | None = None
    ) -> None:
        """Set the lifecycle (`creating`, `ready`, `error`, `deleting`); `last_error` replaces the stored one."""
        container = await self._require(container_id)
        container.lifecycle = lifecycle
        container.last_error = last_error
        await self.session.flush()

    async def set_runtime(
        self,
        container_id: UUID,
        *,
        vmid: int | None = None,
        ip_address: str | None = None,
        pve_created_by_operation: UUID | None = None,
        pve_create_upid: str | None = None,
    ) -> None:
        """Record facts learnt on Proxmox; only the given fields change.

        Set `pve_created_by_operation` right after the Proxmox create task succeeded: a redelivered message of the
        same operation then finds it and continues instead of creating the container again. `pve_create_upid` is the
        create task infrahaus started for this record (proof of ownership while the guest holds `lock: create`).
        """
        container = await self._require(container_id)
        if vmid is not None:
            container.vmid = vmid
        if ip_address is not None:
            container.ip_address = ip_address
        if pve_created_by_operation is not None:
            container.pve_created_by_operation = pve_created_by_operation
        if pve_create_upid is not None:
            container.pve_create_upid = pve_create_upid
        await self.session.flush()

    async def replace_services(
        self,
        container_id: UUID,
        services: Sequence[ServiceInfo],
        credentials: dict[str, dict[str, str]],
        *,
        operation_id: UUID | None = None,
    ) -> None:
        """Replace the discovered services and credentials (`{service: {KEY: value}}`, encrypted here).

        Writes one `service_discovered` event per service (never a credential value). Needs a SecretBox when
        `credentials` is not empty.
        """
        container = await self._require(container_id)
        if credentials and self.box is None:
            raise RuntimeError("ContainerService needs a SecretBox to store credentials.")
        await self.session.execute(delete(DiscoveredService).where(DiscoveredService.container_id == container_id))
        await self.session.execute(delete(ServiceCredential).where(ServiceCredential.container_id == container_id))
        for info in services:
            self.session.add(DiscoveredService(container_id=container_id, **msgspec.structs.asdict(info)))
        for service, pairs in credentials.items():
            for key, value in pairs.items():
                assert self.box is not None
                self.session.add(
                    ServiceCredential(
                        container_id=container_id, service=service, key=key, value=self.box.encrypt(value)
                    )
                )
        container.services_discovered_at = _now()
        await self.session.flush()
        for info in services:
            await self.events.record(
                container_id,
                "service_discovered",
                f"Service {info.name} discovered" + (f" on port {info.port}." if info.port else "."),
                {"name": info.name, "port": info.port, "status": info.status, "is_system": info.is_system},
                operation_id,
            )

    async def remove(self, container_id: UUID) -> None:
        """Remove the container record (after Proxmox destroyed it), its reservation, services and credentials.
        Its operations and events stay, still naming the container (the streams and the audit keep them)."""
        await self.session.execute(delete(VmidReservation).where(VmidReservation.container_id == container_id))
        container = await self.session.get(Container, container_id)
        if container is not None:
            await self.session.delete(container)
        await self.session.flush()
        await self.events.logbuffer.clear(container_id)

    async def _require(self, container_id: UUID) -> Container:
        container = await self.session.get(Container, container_id)
        if container is None:
            raise NotFoundError("Container not found.")
        return container


__all__ = ["ContainerService", "GuestStatusReader", "OperationRead"]
