"""Day two on an existing container: sync to a template revision, snapshots, drift, and the container's settings.

Every change is an operation (`sync`, `snapshot_create`, `snapshot_rollback`, `snapshot_delete`), queued here and
carried out by the worker, one at a time per container like every other operation; the caller commits, then sends
the job. `request_sync` is the one entry point for a sync, whoever asks (the API, a start with `sync_on_start`, a
bulk action). Drift and the snapshot list are live reads of the node.
"""

import hashlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.after_commit import after_commit
from infrahaus_domain.containers.errors import InvalidStateError, NoTemplateError
from infrahaus_domain.containers.schemas import ContainerSpec
from infrahaus_domain.containers.service import ContainerRepository, ContainerService
from infrahaus_domain.containers.spec_builder import spec_for_revision
from infrahaus_domain.day_two import drift as drifts
from infrahaus_domain.day_two.schemas import (
    SYNC_STEPS,
    ContainerSettings,
    ContainerSettingsUpdate,
    DriftReport,
    RollbackRequest,
    SnapshotCreate,
    SnapshotList,
    SnapshotRead,
    SyncRequest,
    SyncStep,
)
from infrahaus_domain.errors import FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.models.containers import Container, Operation
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.models.templates import TemplateRevision
from infrahaus_domain.nodes.connection import NodeAccess, node_errors
from infrahaus_domain.operations.service import OperationService
from infrahaus_domain.ports import Cache
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.settings import DayTwoSettings
from infrahaus_domain.templates.revisions import RevisionService, revision_content
from infrahaus_domain.webhooks import outbox
from infrahaus_proxmox.errors import ProxmoxNotFound
from infrahaus_proxmox.snapshot import RESERVED_NAMES

# Automatic snapshots are named `ih-<what>-<operation>`; a user's own names are anything else.
AUTOMATIC_PREFIX = "ih-"
DriftSelector = int | str | None


def applied_spec(container: Container) -> ContainerSpec:
    """The spec the container was last brought to: the last sync's, else its creation's."""
    return msgspec.convert(container.applied_spec or container.request, ContainerSpec)


# How long an announced drift is remembered (the same drift found again within it is not announced again).
_DRIFT_ANNOUNCED_TTL = 86400.0


class DayTwoService(DomainService[Container, ContainerRepository]):
    repository_type = ContainerRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        containers: ContainerService,
        operations: OperationService,
        access: NodeAccess,
        cache: Cache,
        settings: DayTwoSettings,
        ssh_timeout: float = 10.0,
    ) -> None:
        super().__init__(session)
        self.containers = containers
        self.operations = operations
        self.access = access
        self.cache = cache
        self.settings = settings
        self.ssh_timeout = ssh_timeout

    @property
    def revisions(self) -> RevisionService:
        return RevisionService(session=self.session)

    # ------------------------------------------------------------------ sync

    async def request_sync(
        self,
        container_id: UUID,
        user_id: UUID,
        data: SyncRequest | None = None,
        *,
        reason: str = "request",
        check_status: bool = True,
    ) -> Operation:
        """Queue a sync of the container to a revision of its template (the newest by default).

        Needs a ready container made from a template that still exists, running (`check_status`: asked live; a sync
        queued right after a start skips it); scripts named in `scripts` must be the revision's. `reason` says who
        asked (`request`, `on_start`, `bulk`, ...), recorded in the operation's params.
        """
        data = data or SyncRequest()
        container = await self.containers.get_for_user(container_id, user_id)
        if container.lifecycle != "ready":
            raise InvalidStateError(f"The container is {container.lifecycle}; a sync needs a ready container.")
        if container.template_id is None:
            raise NoTemplateError("The container has no template (anymore): there is no revision to sync it to.")
        revision = await self.revisions.find(container.template_id, data.revision)
        content = revision_content(revision)
        errors = [
            FieldError(field=f"scripts[{i}]", message=f"Revision {revision.number} has no script named {name!r}.")
            for i, name in enumerate(data.scripts or [])
            if name not in {s.name for s in content.scripts}
        ]
        if errors:
            raise ValidationFailed(errors)
        steps: list[SyncStep] = [s for s in SYNC_STEPS if data.steps is None or s in data.steps]
        if check_status:
            await self._require_running(container, "a sync")
        params: dict[str, Any] = {
            "revision": revision.number,
            "revision_id": str(revision.id),
            "steps": steps,
            "scripts": list(data.scripts or []),
            "snapshot": data.snapshot,
            "reason": reason,
        }
        return await self.operations.queue(container_id=container.id, user_id=user_id, kind="sync", params=params)

    # ------------------------------------------------------------------ snapshots

    async def request_snapshot(self, container_id: UUID, user_id: UUID, data: SnapshotCreate) -> Operation:
        container = await self._ready(container_id, user_id, "a snapshot")
        name = data.name or f"snap-{_stamp()}"
        self._check_name(name)
        params = {"name": name, "description": data.description}
        return await self.operations.queue(
            container_id=container.id, user_id=user_id, kind="snapshot_create", params=params
        )

    async def request_rollback(
        self, container_id: UUID, user_id: UUID, name: str, data: RollbackRequest | None = None
    ) -> Operation:
        container = await self._ready(container_id, user_id, "a rollback")
        self._check_name(name)
        params: dict[str, Any] = {"name": name, "start": data.start if data is not None else None}
        return await self.operations.queue(
            container_id=container.id, user_id=user_id, kind="snapshot_rollback", params=params
        )

    async def request_snapshot_delete(self, container_id: UUID, user_id: UUID, name: str) -> Operation:
        container = await self._ready(container_id, user_id, "deleting a snapshot")
        self._check_name(name)
        return await self.operations.queue(
            container_id=container.id, user_id=user_id, kind="snapshot_delete", params={"name": name}
        )

    async def snapshots(self, container_id: UUID, user_id: UUID) -> SnapshotList:
        """The container's snapshots as its node lists them, oldest first."""
        container = await self.containers.get_for_user(container_id, user_id)
        node = await self._node(container)
        endpoint = self.access.endpoint(node)
        vmid = container.vmid
        await self.end_read()
        with node_errors(endpoint):
            async with self.access.client(endpoint, timeout=10.0) as client:
                try:
                    listed = await client.snapshots.list(endpoint.require_pve_node(), vmid)
                    supported = await client.snapshots.has_feature(endpoint.require_pve_node(), vmid)
                except ProxmoxNotFound:
                    raise InvalidStateError("The container does not exist on its node.") from None
        current = next((s for s in listed if s.is_current), None)
        items = sorted((s for s in listed if not s.is_current), key=lambda s: (s.snaptime or 0, s.name))
        return SnapshotList(
            items=[
                SnapshotRead(
                    name=s.name,
                    description=s.description.rstrip("\n"),
                    created_at=_from_epoch(s.snaptime),
                    parent=s.parent,
                    state=s.snapstate,
                    automatic=s.name.startswith(AUTOMATIC_PREFIX),
                )
                for s in items
            ],
            current_parent=current.parent if current is not None else None,
            supported=supported,
        )

    # ------------------------------------------------------------------ drift

    async def drift(
        self, container_id: UUID, user_id: UUID, revision: DriftSelector = None, *, refresh: bool = False
    ) -> DriftReport:
        """Compare the running container with `revision` (default: the one it was last brought to; `latest`; a
        number); reuses a recent answer unless `refresh`."""
        container = await self.containers.get_for_user(container_id, user_id)
        selector = _selector(revision)
        target = await self.drift_target(container, selector)
        latest = await self.operations.latest_for_container(container.id)
        key = (
            f"drift:{container.id}:{target.revision}:{latest.id if latest else '-'}:{latest.status if latest else '-'}"
        )
        if not refresh and self.settings.drift_cache_seconds > 0:
            cached = await self.cache.get(key)
            if cached is not None:
                return msgspec.structs.replace(drifts.decode(cached), cached=True)
        node = await self._node(container)
        endpoint = self.access.endpoint(node)
        vmid = container.vmid
        await self.end_read()
        report = await drifts.compute(
            self.access,
            endpoint,
            container_id=container.id,
            vmid=vmid,
            target=target,
            timeout=self.settings.drift_timeout,
            ssh_timeout=self.ssh_timeout,
        )
        if self.settings.drift_cache_seconds > 0:
            await self.cache.set(key, drifts.encode(report), ttl=self.settings.drift_cache_seconds)
        await self._announce_drift(container, report)
        return report

    async def _announce_drift(self, container: Container, report: DriftReport) -> None:
        """A `drift.detected` webhook delivery when a computed report shows drift that was not announced yet
        (the same drift found again is not; once the container is in sync, the next drift is)."""
        seen_key = f"drift-announced:{container.id}"
        drifted = [item for item in report.items if item.state != "same"]
        if not drifted:
            await self.cache.delete(seen_key)
            return
        digest = hashlib.sha256(
            msgspec.json.encode([report.revision, [(i.kind, i.name, i.state) for i in drifted]])
        ).hexdigest()
        if (await self.cache.get(seen_key) or b"").decode() == digest:
            return
        data = {
            "container_id": str(container.id),
            "node_id": str(container.node_id),
            "revision": report.revision,
            "applied_revision": report.applied_revision,
            "computed_at": report.computed_at.isoformat(),
            "items": msgspec.to_builtins(drifted),
        }
        found = await outbox.enqueue(
            self.session, container.user_id, ["drift.detected"], data, bus=self.containers.events.logbuffer.bus
        )
        if found:
            after_commit(self.session, lambda: self.cache.set(seen_key, digest.encode(), ttl=_DRIFT_ANNOUNCED_TTL))

    async def drift_target(self, container: Container, selector: int | str | None) -> drifts.DriftTarget:
        applied = applied_spec(container)
        applied_revision = await self._number(container.synced_revision_id or container.template_revision_id)
        if selector is None:
            return drifts.DriftTarget(
                target=applied, applied=applied, revision=applied_revision, applied_revision=applied_revision
            )
        if container.template_id is None:
            raise NoTemplateError("The container has no template (anymore): there is no revision to compare with.")
        found: TemplateRevision = await self.revisions.find(
            container.template_id, "latest" if selector == "latest" else int(selector)
        )
        target = spec_for_revision(applied, revision_content(found), found.number)
        return drifts.DriftTarget(
            target=target, applied=applied, revision=found.number, applied_revision=applied_revision
        )

    # ------------------------------------------------------------------ settings

    async def update_settings(
        self, container_id: UUID, user_id: UUID, data: ContainerSettingsUpdate
    ) -> ContainerSettings:
        container = await self.containers.get_for_user(container_id, user_id)
        if not isinstance(data.sync_on_start, msgspec.UnsetType):
            if data.sync_on_start and container.template_id is None:
                raise NoTemplateError("The container has no template: there is nothing to sync after a start.")
            container.sync_on_start = data.sync_on_start
            await self.session.flush()
        return ContainerSettings(sync_on_start=container.sync_on_start)

    async def settings_of(self, container_id: UUID, user_id: UUID) -> ContainerSettings:
        container = await self.containers.get_for_user(container_id, user_id)
        return ContainerSettings(sync_on_start=container.sync_on_start)

    # ------------------------------------------------------------------ helpers

    async def _ready(self, container_id: UUID, user_id: UUID, what: str) -> Container:
        container = await self.containers.get_for_user(container_id, user_id)
        if container.lifecycle != "ready":
            raise InvalidStateError(f"The container is {container.lifecycle}; {what} needs a ready container.")
        return container

    async def _require_running(self, container: Container, what: str) -> None:
        guest_status = self.containers.guest_status
        if guest_status is None:
            raise RuntimeError("DayTwoService needs the containers' GuestStatusReader")
        node = await self._node(container)
        status = await guest_status.live_status(node, container.vmid)
        if status != "running":
            raise InvalidStateError(f"The container is {status}; {what} needs it running.")

    async def _node(self, container: Container) -> Node:
        node = await self.session.get(Node, container.node_id)
        if node is None:
            raise NotFoundError("Container not found.")
        return node

    async def _number(self, revision_id: UUID | None) -> int | None:
        if revision_id is None:
            return None
        return await self.session.scalar(select(TemplateRevision.number).where(TemplateRevision.id == revision_id))

    @staticmethod
    def _check_name(name: str) -> None:
        if name.lower() in RESERVED_NAMES:
            raise ValidationFailed([FieldError(field="name", message=f"{name!r} is a name Proxmox reserves.")])


def _selector(value: DriftSelector) -> int | str | None:
    if value is None or value == "latest" or isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValidationFailed([FieldError(field="revision", message="Use `latest` or a revision number.")])


def _from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
