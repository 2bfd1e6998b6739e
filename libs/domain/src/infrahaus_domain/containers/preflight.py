"""Preflight of a creation request: every problem at once, nothing changed anywhere.

Checks: the request itself, VMID free, storage has `rootdir` and room, OS template present, bridge present, token
privileges (`/access/permissions` per ACL path: every privilege the creation and the container's later operations
need, each missing one named with its path, check code `missing_privileges`), root-only options (keyctl, fuse,
privileged features) applicable over SSH as root, SSH reachable. A check that cannot run because the node is
unreachable fails with that reason.
"""

import asyncio
from uuid import UUID

from infrahaus_domain.containers.creation import ContainerCreationService
from infrahaus_domain.containers.schemas import ContainerCreate, ContainerSpec, PreflightCheck, PreflightReport
from infrahaus_domain.errors import DomainError, ValidationFailed
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import NodeAccess, NodeEndpoint
from infrahaus_domain.nodes.privileges import container_needs, describe, missing_privileges
from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxError

_GIB = 1024**3


class PreflightService:
    """Runs the preflight checks of `POST /api/containers/preflight`."""

    def __init__(self, creation: ContainerCreationService, access: NodeAccess, *, timeout: float = 5.0) -> None:
        self.creation = creation
        self.vmids = creation.vmids
        self.access = access
        self.timeout = timeout

    async def run(self, user_id: UUID, data: ContainerCreate, *, node: Node | None = None) -> PreflightReport:
        """Every check's outcome; `NoNodeConfiguredError` when the user has no node at all. `node`: the node
        placement picked (`PlacementService.preflight`), else the request's."""
        try:
            node, _template, spec = await self.creation.resolve(user_id, data, node=node)
        except ValidationFailed as exc:
            return request_failed(exc)
        checks = [PreflightCheck(name="request", ok=True, detail="The request is valid.")]
        endpoint = self.access.endpoint(node)
        # Concurrently, so an unreachable node costs one timeout, not one per check.
        vmid_check, api_checks, ssh_check = await asyncio.gather(
            self._vmid(node, data.vmid), self.api_checks(endpoint, spec, data.vmid), self.ssh_check(endpoint)
        )
        checks.append(vmid_check)
        checks.extend(api_checks)
        checks.append(ssh_check)
        checks.append(self.root_options(endpoint, spec, ssh_check.ok))
        return PreflightReport(ok=all(c.ok for c in checks), checks=checks, placement=None)

    async def _vmid(self, node: Node, vmid: int | None) -> PreflightCheck:
        try:
            # Live, as `POST /api/containers` asks: a guest made outside infrahaus may not be in the cache yet.
            taken = await self.vmids.live_taken(node)
            if vmid is None:
                free = await self.vmids.next_free(node, taken=taken)
                return PreflightCheck(name="vmid", ok=True, detail=f"VMID {free.vmid} would be used.")
            availability = await self.vmids.check(node, vmid, taken=taken)
        except DomainError as exc:
            return PreflightCheck(name="vmid", ok=False, detail=exc.detail)
        if availability.available:
            return PreflightCheck(name="vmid", ok=True, detail=f"VMID {vmid} is free.")
        return PreflightCheck(name="vmid", ok=False, detail=f"VMID {vmid} is {availability.reason}.")

    async def api_checks(self, endpoint: NodeEndpoint, spec: ContainerSpec, vmid: int | None) -> list[PreflightCheck]:
        names = ("storage", "os_template", "bridge", "privileges")
        try:
            pve_node = endpoint.require_pve_node()
            async with self.access.client(endpoint, timeout=self.timeout) as client:
                template_check, template_storage = await self._os_template(client, pve_node, spec)
                return [
                    await self._storage(client, pve_node, spec),
                    template_check,
                    await self._bridge(client, pve_node, spec),
                    await self._privileges(client, pve_node, spec, vmid, template_storage),
                ]
        except (ProxmoxError, DomainError) as exc:
            reason = exc.detail if isinstance(exc, DomainError) else str(exc)
            return [
                PreflightCheck(name=n, ok=False, detail=f"Not checked: the node API failed ({reason}).") for n in names
            ]

    @staticmethod
    async def _storage(client: ProxmoxClient, pve_node: str, spec: ContainerSpec) -> PreflightCheck:
        storages = {s.storage: s for s in await client.storage.list(pve_node)}
        storage = storages.get(spec.storage)
        if storage is None:
            return PreflightCheck(
                name="storage", ok=False, detail=f"Storage {spec.storage!r} does not exist on the node."
            )
        if "rootdir" not in storage.content:
            return PreflightCheck(
                name="storage", ok=False, detail=f"Storage {spec.storage!r} cannot hold container disks (no rootdir)."
            )
        needed = spec.disk_gb * _GIB
        if storage.avail and storage.avail < needed:
            return PreflightCheck(
                name="storage",
                ok=False,
                detail=f"Storage {spec.storage!r} has {storage.avail // _GIB} GiB free; {spec.disk_gb} GiB needed.",
            )
        return PreflightCheck(name="storage", ok=True, detail=f"Storage {spec.storage!r} holds container disks.")

    @staticmethod
    async def _os_template(
        client: ProxmoxClient, pve_node: str, spec: ContainerSpec
    ) -> tuple[PreflightCheck, str | None]:
        """The check, and the storage holding the template (from the volid, else where it was found)."""
        wanted = spec.os_template
        volids: list[str] = []
        for storage in await client.storage.list(pve_node, content="vztmpl"):
            volids.extend(v.volid for v in await client.storage.content(pve_node, storage.storage, content="vztmpl"))
        # A volid must match exactly; a short name such as "debian-12-standard" matches by prefix.
        short = ":" not in wanted
        found = [v for v in volids if v == wanted or (short and v.split("/", 1)[-1].startswith(wanted))]
        holder: str | None = wanted.partition(":")[0] if not short else None
        if short and found:
            holder = sorted(found)[-1].partition(":")[0]
        ok = bool(found)
        state = "is" if ok else "is not"
        return PreflightCheck(name="os_template", ok=ok, detail=f"OS template {wanted!r} {state} on the node."), holder

    @staticmethod
    async def _bridge(client: ProxmoxClient, pve_node: str, spec: ContainerSpec) -> PreflightCheck:
        bridges = {i.iface for i in await client.nodes.network(pve_node, type="bridge")}
        if spec.bridge in bridges:
            return PreflightCheck(name="bridge", ok=True, detail=f"Bridge {spec.bridge!r} exists.")
        return PreflightCheck(name="bridge", ok=False, detail=f"Bridge {spec.bridge!r} does not exist on the node.")

    @staticmethod
    async def _privileges(
        client: ProxmoxClient, pve_node: str, spec: ContainerSpec, vmid: int | None, template_storage: str | None
    ) -> PreflightCheck:
        needs = container_needs(
            pve_node=pve_node,
            vmid=vmid if vmid is not None else await client.cluster.nextid(),
            storage=spec.storage,
            template_storage=template_storage,
            bridge=spec.bridge,
        )
        missing = await missing_privileges(client, needs)
        if missing:
            return PreflightCheck(
                name="privileges",
                ok=False,
                detail=describe(missing),
                code="missing_privileges",
                missing_privileges=missing,
            )
        return PreflightCheck(name="privileges", ok=True, detail="The API token has the privileges needed.")

    async def ssh_check(self, endpoint: NodeEndpoint) -> PreflightCheck:
        runner = self.access.runner(endpoint, connect_timeout=self.timeout)
        try:
            await runner.connect()
        except (ProxmoxError, DomainError) as exc:
            reason = exc.detail if isinstance(exc, DomainError) else str(exc)
            return PreflightCheck(name="ssh", ok=False, detail=f"SSH to {endpoint.ssh_host} failed: {reason}")
        finally:
            await runner.aclose()
        return PreflightCheck(name="ssh", ok=True, detail=f"SSH to {endpoint.ssh_host} works.")

    @staticmethod
    def root_options(endpoint: NodeEndpoint, spec: ContainerSpec, ssh_ok: bool) -> PreflightCheck:
        wanted = sorted(spec.root_only_features)
        if not wanted:
            return PreflightCheck(name="root_options", ok=True, detail="No root-only options requested.")
        listed = ", ".join(wanted)
        if endpoint.ssh_username != "root":
            return PreflightCheck(
                name="root_options",
                ok=False,
                detail=f"{listed} need root@pam; SSH logs in as {endpoint.ssh_username!r}, not root.",
            )
        if not ssh_ok:
            return PreflightCheck(name="root_options", ok=False, detail=f"{listed} need SSH as root, which fails.")
        return PreflightCheck(name="root_options", ok=True, detail=f"{listed} will be applied over SSH as root.")


def request_failed(exc: ValidationFailed) -> PreflightReport:
    """The report of an invalid request: one failed `request` check naming every bad field."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
    return PreflightReport(ok=False, checks=[PreflightCheck(name="request", ok=False, detail=detail)], placement=None)
