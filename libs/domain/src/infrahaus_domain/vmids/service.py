"""VMIDs: a per-node cache of the ids Proxmox already uses, and reservations held by accepted creations.

The cache (a set per node in the Cache port) answers availability checks without asking Proxmox while
it is warm. The `vmid_reservations` table's unique (node_id, vmid) constraint is what makes two
concurrent creations of the same VMID impossible: the cache is only a hint.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.nodes.connection import NodeEndpoint, node_errors, proxmox_client
from infrahaus_domain.nodes.errors import NodeRequestError
from infrahaus_domain.ports import Cache, Lock
from infrahaus_domain.vmids.errors import VmidTakenError
from infrahaus_domain.vmids.schemas import VMID_MAX, VMID_MIN, VmidAvailability, VmidList, VmidNext

DEFAULT_TTL = 300.0
# The refresh time is stored as one member of the set itself, so a single SMEMBERS answers both
# "is the cache warm" and "is this id taken", and the two can never expire apart.
_STAMP = "refreshed_at="


def validate_vmid(vmid: int) -> int:
    """Raise `ValidationFailed` (422) unless `vmid` is in Proxmox's valid range."""
    if not VMID_MIN <= vmid <= VMID_MAX:
        raise ValidationFailed([FieldError(field="vmid", message=f"must be between {VMID_MIN} and {VMID_MAX}")])
    return vmid


class VmidReservationRepository(SQLAlchemyAsyncRepository[VmidReservation]):
    model_type = VmidReservation


class VmidService(SQLAlchemyAsyncRepositoryService[VmidReservation, VmidReservationRepository]):
    """VMID cache and reservations of nodes the caller already resolved (ownership is checked before).

    With a `lock`, concurrent cache misses for one node wait for a single refresh instead of each asking Proxmox.
    """

    repository_type = VmidReservationRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        cache: Cache,
        box: SecretBox,
        lock: Lock | None = None,
        ttl: float = DEFAULT_TTL,
        api_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(session, **kwargs)
        self.cache = cache
        self.box = box
        self.lock = lock
        self.ttl = ttl
        self.api_timeout = api_timeout

    @property
    def session(self) -> AsyncSession:
        session: AsyncSession = self.repository.session  # type: ignore[assignment]
        return session

    # ------------------------------------------------------------------ cache

    async def taken(self, node: Node) -> VmidList:
        """The ids in use on Proxmox (LXC and QEMU), from the cache; filled from the node when cold."""
        cached = await self._cached(node.id)
        if cached is None:
            return await self.refresh(node)
        taken, refreshed_at = cached
        return VmidList(taken=sorted(taken), refreshed_at=refreshed_at)

    async def refresh(self, node: Node) -> VmidList:
        """Reload the node's guests from `/cluster/resources` into the cache."""
        endpoint = NodeEndpoint.from_node(node, self.box)
        with node_errors(endpoint):
            async with proxmox_client(endpoint, timeout=self.api_timeout) as client:
                resources = await client.cluster.resources(type="vm")
        taken = sorted({r.vmid for r in resources if r.vmid is not None and r.type in ("lxc", "qemu")})
        refreshed_at = datetime.now(UTC)
        members = [*(str(v) for v in taken), f"{_STAMP}{refreshed_at.isoformat()}"]
        await self.cache.replace_set(_cache_key(node.id), members, ttl=self.ttl)
        return VmidList(taken=taken, refreshed_at=refreshed_at)

    async def invalidate(self, node_id: uuid.UUID) -> None:
        """Forget the node's cached ids; call after creating or deleting a guest on it."""
        await self.cache.delete(_cache_key(node_id))

    # ------------------------------------------------------------------ availability

    async def check(self, node: Node, vmid: int) -> VmidAvailability:
        """Whether `vmid` is free on the node: not on Proxmox (per the cache) and not reserved."""
        validate_vmid(vmid)
        reserved = await self.session.scalar(
            select(VmidReservation.id).where(VmidReservation.node_id == node.id, VmidReservation.vmid == vmid)
        )
        return await self._availability(node, vmid, reserved=reserved is not None)

    async def check_owned(self, user_id: uuid.UUID, node_id: uuid.UUID, vmid: int) -> VmidAvailability:
        """`check` on the caller's node, reading node and reservation in one query (the API's hot path).

        Another user's node is reported exactly like a missing one.
        """
        validate_vmid(vmid)
        reserved = exists().where(VmidReservation.node_id == Node.id, VmidReservation.vmid == vmid)
        row = (
            await self.session.execute(select(Node, reserved).where(Node.id == node_id, Node.user_id == user_id))
        ).one_or_none()
        if row is None:
            raise NotFoundError("Node not found.")
        node, is_reserved = row
        return await self._availability(node, vmid, reserved=bool(is_reserved))

    async def _availability(self, node: Node, vmid: int, *, reserved: bool) -> VmidAvailability:
        if vmid in await self._taken_ids(node):
            return VmidAvailability(vmid=vmid, available=False, reason="taken")
        if reserved:
            return VmidAvailability(vmid=vmid, available=False, reason="reserved")
        return VmidAvailability(vmid=vmid, available=True)

    async def next_free(self, node: Node) -> VmidNext:
        """Proxmox's next free id, moved past ids that are reserved or known taken."""
        taken = await self._taken_ids(node)
        endpoint = NodeEndpoint.from_node(node, self.box)
        with node_errors(endpoint):
            async with proxmox_client(endpoint, timeout=self.api_timeout) as client:
                candidate = await client.cluster.nextid()
        reserved = set(
            await self.session.scalars(
                select(VmidReservation.vmid).where(
                    VmidReservation.node_id == node.id, VmidReservation.vmid >= candidate
                )
            )
        )
        while candidate in taken or candidate in reserved:
            candidate += 1
        if candidate > VMID_MAX:
            raise NodeRequestError("The node has no free VMID left.")
        return VmidNext(vmid=candidate)

    # ------------------------------------------------------------------ reservations

    async def reserve(self, node: Node, vmid: int, container_id: uuid.UUID | None = None) -> VmidReservation:
        """Claim (node, vmid) for an accepted creation; raise `VmidTakenError` if another creation holds it.

        The claim is an `INSERT ... ON CONFLICT DO NOTHING` against the unique constraint, so on
        PostgreSQL and SQLite alike exactly one of any number of concurrent claims succeeds, and the
        loser's transaction stays usable. It becomes visible to others when the caller commits.
        """
        validate_vmid(vmid)
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(VmidReservation)
            .values(node_id=node.id, vmid=vmid, container_id=container_id)
            .on_conflict_do_nothing(index_elements=["node_id", "vmid"])
            .returning(VmidReservation.id)
        )
        reservation_id = (await self.session.execute(statement)).scalar_one_or_none()
        if reservation_id is None:
            raise VmidTakenError(f"VMID {vmid} is already reserved on this node.")
        reservation = await self.session.get_one(VmidReservation, reservation_id)
        return reservation

    async def release(self, node_id: uuid.UUID, vmid: int) -> None:
        """Drop the reservation of (node, vmid), if any (creation failed, or the container was deleted)."""
        await self.session.execute(
            delete(VmidReservation).where(VmidReservation.node_id == node_id, VmidReservation.vmid == vmid)
        )

    # ------------------------------------------------------------------ helpers

    async def _cached(self, node_id: uuid.UUID) -> tuple[set[int], datetime] | None:
        members = await self.cache.smembers(_cache_key(node_id))
        stamp = next((m for m in members if m.startswith(_STAMP)), None)
        if stamp is None:
            return None
        taken = {int(m) for m in members if not m.startswith(_STAMP)}
        return taken, datetime.fromisoformat(stamp.removeprefix(_STAMP))

    async def _taken_ids(self, node: Node) -> set[int]:
        cached = await self._cached(node.id)
        if cached is not None:
            return cached[0]
        if self.lock is None:
            return set((await self.refresh(node)).taken)
        # One refresh per node at a time: a burst of checks on a cold cache asks Proxmox once.
        wait = self.api_timeout * 3
        async with self.lock.hold(f"vmids-refresh:{node.id}", ttl=wait, wait=wait):
            cached = await self._cached(node.id)
            if cached is not None:
                return cached[0]
            return set((await self.refresh(node)).taken)


def _cache_key(node_id: uuid.UUID) -> str:
    return f"vmids:{node_id}"
