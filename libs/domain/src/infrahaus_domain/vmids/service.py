"""VMIDs: a per-node cache of the ids Proxmox already uses, and reservations held by accepted creations.

The cache (a set per node in the Cache port) answers availability checks without asking Proxmox while
it is warm. The `vmid_reservations` table's unique (node_id, vmid) constraint is what makes two
concurrent creations of the same VMID impossible: the cache is only a hint.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.errors import FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.models.containers import Container
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.nodes.connection import NodeAccess, node_errors
from infrahaus_domain.nodes.errors import NodeRequestError
from infrahaus_domain.ports import Cache, Lock
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.vmids.errors import VmidTakenError
from infrahaus_domain.vmids.schemas import VMID_MAX, VMID_MIN, VmidAvailability, VmidList, VmidNext

DEFAULT_TTL = 300.0
# The refresh time is stored as one member of the set itself, so a single SMEMBERS answers both
# "is the cache warm" and "is this id taken", and the two can never expire apart.
_STAMP = "refreshed_at="


def validate_vmid(vmid: int) -> int:
    """Raise `ValidationFailed` (422) unless `vmid` is in Proxmox's valid range."""
    if not VMID_MIN <= vmid <= VMID_MAX:
        raise ValidationFailed(
            [
                FieldError(
                    field="vmid",
                    message=f"Must be between {VMID_MIN} and {VMID_MAX}.",
                    code="too_large" if vmid > VMID_MAX else "too_small",
                )
            ]
        )
    return vmid


class VmidReservationRepository(SQLAlchemyAsyncRepository[VmidReservation]):
    model_type = VmidReservation


class VmidService(DomainService[VmidReservation, VmidReservationRepository]):
    """VMID cache and reservations of nodes the caller already resolved (ownership is checked before).

    With a `lock`, concurrent cache misses for one node wait for a single refresh instead of each asking Proxmox.
    """

    repository_type = VmidReservationRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        cache: Cache,
        access: NodeAccess,
        lock: Lock | None = None,
        ttl: float = DEFAULT_TTL,
        api_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(session, **kwargs)
        self.cache = cache
        self.access = access
        self.lock = lock
        self.ttl = ttl
        self.api_timeout = api_timeout

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
        endpoint = self.access.endpoint(node)
        with node_errors(endpoint):
            async with self.access.client(endpoint, timeout=self.api_timeout) as client:
                resources = await client.cluster.resources(type="vm")
        taken = sorted({r.vmid for r in resources if r.vmid is not None and r.type in ("lxc", "qemu")})
        refreshed_at = datetime.now(UTC)
        members = [*(str(v) for v in taken), f"{_STAMP}{refreshed_at.isoformat()}"]
        await self.cache.replace_set(vmids_cache_key(node.id), members, ttl=self.ttl)
        return VmidList(taken=taken, refreshed_at=refreshed_at)

    async def invalidate(self, node_id: uuid.UUID) -> None:
        """Forget the node's cached ids; call after creating or deleting a guest on it."""
        await self.cache.delete(vmids_cache_key(node_id))

    # ------------------------------------------------------------------ availability

    async def check(self, node: Node, vmid: int, *, taken: set[int] | None = None) -> VmidAvailability:
        """Whether `vmid` is free on the node: not on Proxmox and not reserved. Proxmox's ids come from `taken` (a
        live answer, see `live_taken`) when given, else from the cache."""
        validate_vmid(vmid)
        reservation = await self.session.scalar(_reservation_reason(VmidReservation.node_id == node.id, vmid))
        ids = taken if taken is not None else await self._taken_ids(node)
        return _availability(vmid, vmid in ids, reservation)

    async def check_owned(self, user_id: uuid.UUID, node_id: uuid.UUID, vmid: int) -> VmidAvailability:
        """`check` on the caller's node, reading node and reservation in one query (the API's hot path).

        Another user's node is reported exactly like a missing one.
        """
        validate_vmid(vmid)
        row = (
            await self.session.execute(_CHECK_OWNED, {"node_id": node_id, "user_id": user_id, "vmid": vmid})
        ).one_or_none()
        if row is None:
            raise NotFoundError("Node not found.")
        reason: str | None = row[1]
        # A warm cache answers for this one id without reading (and parsing) the node's whole set.
        taken = await self.cache.set_contains(vmids_cache_key(node_id), str(vmid))
        if taken is None:
            taken = vmid in await self._taken_ids(await self.session.get_one(Node, node_id))
        return _availability(vmid, taken, reason)

    async def live_taken(self, node: Node) -> set[int]:
        """The ids in use on the node's cluster right now, asked from the node (`/cluster/resources`, LXC and QEMU);
        the cache is refreshed with the answer. Raises the node's domain error when it cannot be asked."""
        return set((await self.refresh(node)).taken)

    async def next_free(self, node: Node, *, taken: set[int] | None = None) -> VmidNext:
        """Proxmox's next free id, moved past ids that are reserved or taken (`taken` when given, else the cache)."""
        taken = taken if taken is not None else await self._taken_ids(node)
        endpoint = self.access.endpoint(node)
        with node_errors(endpoint):
            async with self.access.client(endpoint, timeout=self.api_timeout) as client:
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
        members = await self.cache.smembers(vmids_cache_key(node_id))
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


def _reservation_reason(node_matches: ColumnElement[bool], vmid: int | BindParameter[int]) -> Select[str]:
    """The reason a reservation of (node, vmid) holds the id: `taken` once its container's guest exists on Proxmox
    (the create task succeeded), `reserved` before; no row when nothing holds it."""
    return (
        select(case((Container.pve_created_by_operation.is_not(None), "taken"), else_="reserved"))
        .select_from(VmidReservation)
        .outerjoin(Container, Container.id == VmidReservation.container_id)
        .where(node_matches, VmidReservation.vmid == vmid)
        .limit(1)
    )


# `check_owned`'s statement, built once: constructing it per request cost more CPU than running it.
_CHECK_OWNED = select(
    Node.id, _reservation_reason(VmidReservation.node_id == Node.id, bindparam("vmid")).scalar_subquery()
).where(Node.id == bindparam("node_id"), Node.user_id == bindparam("user_id"))


def _availability(vmid: int, taken: bool, reservation: str | None) -> VmidAvailability:
    if taken or reservation == "taken":
        return VmidAvailability(vmid=vmid, available=False, reason="taken")
    if reservation is not None:
        return VmidAvailability(vmid=vmid, available=False, reason="reserved")
    return VmidAvailability(vmid=vmid, available=True)


def vmids_cache_key(node_id: uuid.UUID) -> str:
    """The Cache port key of a node's cached VMID set."""
    return f"vmids:{node_id}"
