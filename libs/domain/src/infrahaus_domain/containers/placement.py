"""Placement: the node of a creation that asks for `node_id: "auto"` (or omits it and gives `placement`).

Decided when the creation is accepted, so the 202 names the node (ADR 0015). Every node of the user is asked at
once, with the preflight's own checks (storage with room, OS image, bridge, the token's privileges, SSH, root-only
options) and three figures: available memory (`GET /nodes/{node}/status` `memory.available`, pve-manager
PVE/API2/Nodes.pm `status` from pve-common PVE/ProcFSTools.pm `read_meminfo`), free space on the storage
(`GET /nodes/{node}/storage` `avail`) and the guests on the node (`GET /cluster/resources?type=vm`, LXC and QEMU).
Creations accepted here whose guest does not exist yet count as guests of their node, with their memory, so a burst
of placements does not pile onto one node. A node that cannot be asked, lacks something, runs a guest with an
avoided tag, has less memory available than the container asks for, or already holds the requested VMID is skipped
with every reason; the decision lists each node with its figures.
"""

import asyncio
from dataclasses import dataclass, field
from uuid import UUID

import msgspec
from sqlalchemy import select

from infrahaus_domain import allowlist as v
from infrahaus_domain.containers.creation import ContainerCreationService
from infrahaus_domain.containers.errors import NoEligibleNodeError, NoNodeConfiguredError
from infrahaus_domain.containers.marker import split_tags
from infrahaus_domain.containers.placement_schemas import (
    PlacementCandidate,
    PlacementDecision,
    PlacementFigures,
    PlacementRequest,
)
from infrahaus_domain.containers.preflight import PreflightService, request_failed
from infrahaus_domain.containers.schemas import (
    ContainerCreate,
    ContainerCreated,
    ContainerSpec,
    PreflightCheck,
    PreflightReport,
)
from infrahaus_domain.errors import DomainError, FieldError, ValidationFailed
from infrahaus_domain.models.containers import Container, Operation
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.nodes.connection import NodeAccess, NodeEndpoint, node_errors

_MIB = 1024**2
_GIB = 1024**3


def wants_placement(data: ContainerCreate) -> bool:
    """The request leaves the node to placement: `node_id: "auto"`, or no `node_id` with `placement` given."""
    return data.node_id == "auto" or (data.node_id is None and data.placement is not None)


@dataclass(frozen=True)
class Placed:
    """A placement's outcome for `PlacementService.accept`: the request with the placement's storage and bridge,
    the decision, and the node picked."""

    data: ContainerCreate
    decision: PlacementDecision
    node: Node


@dataclass
class _Probe:
    """What one node answered (Proxmox only; the database is asked before and after, never concurrently)."""

    node: Node
    reachable: bool = False
    unreachable_reason: str = ""
    memory_available: int | None = None
    memory_total: int | None = None
    storage_avail: int | None = None
    guests: int | None = None
    taken: set[int] = field(default_factory=set)
    tagged: set[str] = field(default_factory=set)
    checks: list[PreflightCheck] = field(default_factory=list)


class PlacementService:
    """Accepts and preflights creations, placing those that ask for it (`node_id: auto` / `placement`)."""

    def __init__(self, creation: ContainerCreationService, preflight: PreflightService, access: NodeAccess) -> None:
        self.creation = creation
        self.preflight_service = preflight
        self.access = access
        self.session = creation.session

    async def place(self, user_id: UUID, data: ContainerCreate) -> Placed | None:
        """Pick the node of a request that asks for placement (None for one that names its node), before the
        request's writes begin: the nodes are asked outside a transaction (ADR 0002). `NoEligibleNodeError` (409,
        every node's reasons) when none is eligible."""
        if not wants_placement(data):
            return None
        data, decision, node = await self.decide(user_id, data)
        if node is None:
            raise NoEligibleNodeError(decision)
        return Placed(data=data, decision=decision, node=node)

    async def accept(
        self, user_id: UUID, data: ContainerCreate, placed: Placed | None = None
    ) -> tuple[ContainerCreated, Operation]:
        """`ContainerCreationService.accept` on the node the request names, or on the one `place` picked."""
        if placed is None:
            placed = await self.place(user_id, data)
        if placed is None:
            return await self.creation.accept(user_id, data)
        return await self.creation.accept(user_id, placed.data, node=placed.node, placement=placed.decision)

    async def preflight(self, user_id: UUID, data: ContainerCreate) -> PreflightReport:
        """The preflight report; with placement, the checks of the node it would pick and the decision."""
        if not wants_placement(data):
            return await self.preflight_service.run(user_id, data)
        try:
            data, decision, node = await self.decide(user_id, data)
        except ValidationFailed as exc:
            return request_failed(exc)
        if node is None:
            checks = [
                PreflightCheck(name="request", ok=True, detail="The request is valid."),
                PreflightCheck(name="placement", ok=False, detail=decision.reason, code="no_eligible_node"),
            ]
            return PreflightReport(ok=False, checks=checks, placement=decision)
        report = await self.preflight_service.run(user_id, data, node=node)
        placed = PreflightCheck(name="placement", ok=True, detail=f"{decision.node_name}: {decision.reason}")
        return PreflightReport(ok=report.ok, checks=[*report.checks, placed], placement=decision)

    async def decide(
        self, user_id: UUID, data: ContainerCreate
    ) -> tuple[ContainerCreate, PlacementDecision, Node | None]:
        """The request with the placement's storage and bridge applied, the decision, and the node picked (None when
        no node is eligible). Raises `ValidationFailed` for a bad request, `NoNodeConfiguredError` without nodes."""
        request = data.placement or PlacementRequest()
        data = self._apply_requirements(data, request)
        nodes = list(
            await self.session.scalars(
                select(Node).where(Node.user_id == user_id).order_by(Node.is_default.desc(), Node.created_at)
            )
        )
        if not nodes:
            raise NoNodeConfiguredError("No node is configured: register a Proxmox node first (POST /api/nodes).")
        # The request is validated once; only the node differs between candidates.
        _, _, spec = await self.creation.resolve(user_id, data, node=nodes[0])
        pending = await self._pending(nodes)
        # Resolving may have recorded a template's first revision (flushed): it stands on its own.
        await self.creation.end_read()
        probes = await asyncio.gather(*(self._probe(node, spec, data.vmid) for node in nodes))
        candidates: list[tuple[_Probe, list[str]]] = []
        for probe in probes:
            node_pending = pending.get(probe.node.id, {})
            waiting = {vmid: mb for vmid, mb in node_pending.items() if vmid not in probe.taken}
            if probe.reachable:
                probe.guests = (probe.guests or 0) + len(waiting)
                if probe.memory_available is not None:
                    probe.memory_available = max(0, probe.memory_available - sum(waiting.values()) * _MIB)
            candidates.append((probe, await self._reasons(probe, spec, data, request)))
        return data, *self._pick(request, spec, candidates)

    # ------------------------------------------------------------------ steps

    @staticmethod
    def _apply_requirements(data: ContainerCreate, request: PlacementRequest) -> ContainerCreate:
        """`require_storage` / `require_bridge` become the container's storage and bridge; a request naming
        another one is refused, as are unsafe names and tags."""
        errors: list[FieldError] = []
        checks = (
            ("require_storage", request.require_storage, data.storage, "storage", v.validate_storage),
            ("require_bridge", request.require_bridge, data.bridge, "bridge", v.validate_bridge),
        )
        for name, required, given, target, validate in checks:
            if required is None:
                continue
            try:
                validate(required)
            except v.UnsafeValueError as exc:
                errors.append(FieldError(field=f"placement.{name}", message=str(exc)))
            if given is not None and given != required:
                errors.append(FieldError(field=f"placement.{name}", message=f"Differs from `{target}` ({given!r})."))
        for i, tag in enumerate(request.avoid_tags):
            try:
                v.validate_tag(tag)
            except v.UnsafeValueError as exc:
                errors.append(FieldError(field=f"placement.avoid_tags[{i}]", message=str(exc)))
        if errors:
            raise ValidationFailed(errors)
        return msgspec.structs.replace(
            data,
            storage=request.require_storage or data.storage,
            bridge=request.require_bridge or data.bridge,
        )

    async def _pending(self, nodes: list[Node]) -> dict[UUID, dict[int, int]]:
        """Per node, the VMIDs reserved by creations not finished yet, with the memory (MiB) each asks for."""
        rows = await self.session.execute(
            select(VmidReservation.node_id, VmidReservation.vmid, Container.request)
            .join(Container, Container.id == VmidReservation.container_id)
            .where(VmidReservation.node_id.in_([n.id for n in nodes]), Container.lifecycle == "creating")
        )
        pending: dict[UUID, dict[int, int]] = {}
        for node_id, vmid, request in rows:
            memory = request.get("memory_mb") if isinstance(request, dict) else None
            pending.setdefault(node_id, {})[vmid] = memory if isinstance(memory, int) else 0
        return pending

    async def _probe(self, node: Node, spec: ContainerSpec, vmid: int | None) -> _Probe:
        """The node's figures and the preflight's checks, asked concurrently (one timeout for a dead node)."""
        probe = _Probe(node=node)
        try:
            endpoint = self.access.endpoint(node)
        except DomainError as exc:
            probe.unreachable_reason = exc.detail
            return probe
        _, api_checks, ssh_check = await asyncio.gather(
            self._figures(endpoint, spec, probe),
            self.preflight_service.api_checks(endpoint, spec, vmid),
            self.preflight_service.ssh_check(endpoint),
        )
        probe.checks = [*api_checks, ssh_check, self.preflight_service.root_options(endpoint, spec, ssh_check.ok)]
        return probe

    async def _figures(self, endpoint: NodeEndpoint, spec: ContainerSpec, probe: _Probe) -> None:
        timeout = self.preflight_service.timeout
        try:
            pve_node = endpoint.require_pve_node()
            with node_errors(endpoint):
                async with self.access.client(endpoint, timeout=timeout) as client:
                    status = await client.nodes.status(pve_node)
                    storages = {s.storage: s for s in await client.storage.list(pve_node)}
                    resources = await client.cluster.resources(type="vm")
        except DomainError as exc:
            probe.unreachable_reason = exc.detail
            return
        probe.reachable = True
        # PVE before 8.3 has no `available`; its `free` was MemFree plus buffers and cache then.
        probe.memory_available = status.memory.available or status.memory.free
        probe.memory_total = status.memory.total
        storage = storages.get(spec.storage)
        probe.storage_avail = storage.avail if storage is not None else None
        guests = [r for r in resources if r.type in ("lxc", "qemu") and r.vmid is not None]
        # Nodes of one cluster answer for every member: the VMIDs are the cluster's, the guests this node's.
        probe.taken = {r.vmid for r in guests if r.vmid is not None}
        here = [r for r in guests if r.node == pve_node]
        probe.guests = len(here)
        probe.tagged = {tag for r in here for tag in split_tags(r.tags)}

    async def _reasons(
        self, probe: _Probe, spec: ContainerSpec, data: ContainerCreate, request: PlacementRequest
    ) -> list[str]:
        if not probe.reachable:
            return [f"The node could not be asked: {probe.unreachable_reason}"]
        reasons = [f"{c.name}: {c.detail}" for c in probe.checks if not c.ok]
        needed = spec.memory_mb * _MIB
        if probe.memory_available is not None and probe.memory_available < needed:
            reasons.append(
                f"memory: {probe.memory_available // _MIB} MiB available; the container asks for {spec.memory_mb} MiB."
            )
        avoided = sorted(probe.tagged & {t.lower() for t in request.avoid_tags})
        if avoided:
            reasons.append(f"avoid_tags: the node runs guests tagged {', '.join(avoided)}.")
        if data.vmid is not None:
            # The reservation table is asked here, one node after the other (one session).
            availability = await self.creation.vmids.check(probe.node, data.vmid, taken=probe.taken)
            if not availability.available:
                reasons.append(f"vmid: VMID {data.vmid} is {availability.reason}.")
        return reasons

    @staticmethod
    def _pick(
        request: PlacementRequest, spec: ContainerSpec, candidates: list[tuple[_Probe, list[str]]]
    ) -> tuple[PlacementDecision, Node | None]:
        eligible = [(i, p) for i, (p, reasons) in enumerate(candidates) if not reasons]

        def most_free(item: tuple[int, _Probe]) -> tuple[int, int, int, int]:
            i, p = item
            return (-(p.memory_available or 0), p.guests or 0, -(p.storage_avail or 0), i)

        def spread(item: tuple[int, _Probe]) -> tuple[int, int, int, int]:
            i, p = item
            return (p.guests or 0, -(p.memory_available or 0), -(p.storage_avail or 0), i)

        picked = min(eligible, key=most_free if request.strategy == "most_free" else spread)[1] if eligible else None
        if picked is None:
            why = "; ".join(f"{p.node.name}: {' '.join(reasons)}" for p, reasons in candidates)
            reason = f"No node is eligible. {why}"
        elif request.strategy == "most_free":
            reason = (
                f"most available memory ({(picked.memory_available or 0) / _GIB:.1f} GiB of "
                f"{(picked.memory_total or 0) / _GIB:.1f} GiB) among {len(eligible)} eligible node(s)."
            )
        else:
            reason = f"fewest guests ({picked.guests}) among {len(eligible)} eligible node(s)."
        return (
            PlacementDecision(
                strategy=request.strategy,
                storage=spec.storage,
                bridge=spec.bridge,
                node_id=picked.node.id if picked else None,
                node_name=picked.node.name if picked else None,
                reason=reason,
                candidates=[
                    PlacementCandidate(
                        node_id=p.node.id,
                        node_name=p.node.name,
                        outcome="picked" if p is picked else ("skipped" if reasons else "eligible"),
                        reasons=reasons,
                        figures=PlacementFigures(
                            memory_available=p.memory_available,
                            memory_total=p.memory_total,
                            storage_avail=p.storage_avail,
                            guests=p.guests,
                        ),
                    )
                    for p, reasons in candidates
                ],
            ),
            picked.node if picked else None,
        )
