"""Preflight of a creation request: every problem at once, nothing changed anywhere.

Checks: the request itself, VMID free, storage has `rootdir` and room, OS template present, bridge present, token
privileges (`/access/permissions`), root-only options (keyctl, fuse, privileged features) applicable over SSH as
root, SSH reachable. A check that cannot run because the node is unreachable fails with that reason.
"""

import asyncio
from uuid import UUID

from infrahaus_domain.containers.schemas import ContainerCreate, ContainerSpec, PreflightCheck, PreflightReport
from infrahaus_domain.containers.service import ContainerService
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import DomainError, ValidationFailed
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import REQUIRED_PRIVILEGES, NodeEndpoint, pct_runner, proxmox_client
from infrahaus_domain.vmids.service import VmidService
from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxError

_GIB = 1024**3


class PreflightService:
    """Runs the preflight checks of `POST /api/containers/preflight`."""

    def __init__(
        self, containers: ContainerService, vmids: VmidService, box: SecretBox, *, timeout: float = 5.0
    ) -> None:
        self.containers = containers
        self.vmids = vmids
        self.box = box
        self.timeout = timeout

    async def run(self, user_id: UUID, data: ContainerCreate) -> PreflightReport:
        """Every check's outcome; `NoNodeConfiguredError` when the user has no node at all."""
        try:
            node, _template, spec = await self.containers.resolve(user_id, data)
        except ValidationFailed as exc:
            detail = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
            return PreflightReport(ok=False, checks=[PreflightCheck(name="request", ok=False, detail=detail)])
        checks = [PreflightCheck(name="request", ok=True, detail="The request is valid.")]
        endpoint = NodeEndpoint.from_node(node, self.box)
        # Concurrently, so an unreachable node costs one timeout, not one per check.
        vmid_check, api_checks, ssh_check = await asyncio.gather(
            self._vmid(node, data.vmid), self._api(endpoint, spec), self._ssh(endpoint)
        )
        checks.append(vmid_check)
        checks.extend(api_checks)
        checks.append(ssh_check)
        checks.append(self._root_options(endpoint, spec, ssh_check.ok))
        return PreflightReport(ok=all(c.ok for c in checks), checks=checks)

    async def _vmid(self, node: Node, vmid: int | None) -> PreflightCheck:
        try:
            if vmid is None:
                free = await self.vmids.next_free(node)
                return PreflightCheck(name="vmid", ok=True, detail=f"VMID {free.vmid} would be used.")
            availability = await self.vmids.check(node, vmid)
        except DomainError as exc:
            return PreflightCheck(name="vmid", ok=False, detail=exc.detail)
        if availability.available:
            return PreflightCheck(name="vmid", ok=True, detail=f"VMID {vmid} is free.")
        return PreflightCheck(name="vmid", ok=False, detail=f"VMID {vmid} is {availability.reason}.")

    async def _api(self, endpoint: NodeEndpoint, spec: ContainerSpec) -> list[PreflightCheck]:
        names = ("storage", "os_template", "bridge", "privileges")
        try:
            pve_node = endpoint.require_pve_node()
            async with proxmox_client(endpoint, timeout=self.timeout) as client:
                return [
                    await self._storage(client, pve_node, spec),
                    await self._os_template(client, pve_node, spec),
                    await self._bridge(client, pve_node, spec),
                    await self._privileges(client),
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
    async def _os_template(client: ProxmoxClient, pve_node: str, spec: ContainerSpec) -> PreflightCheck:
        wanted = spec.os_template
        volids: list[str] = []
        for storage in await client.storage.list(pve_node, content="vztmpl"):
            volids.extend(v.volid for v in await client.storage.content(pve_node, storage.storage, content="vztmpl"))
        # A volid must match exactly; a short name such as "debian-12-standard" matches by prefix.
        short = ":" not in wanted
        if any(v == wanted or (short and v.split("/", 1)[-1].startswith(wanted)) for v in volids):
            return PreflightCheck(name="os_template", ok=True, detail=f"OS template {wanted!r} is on the node.")
        return PreflightCheck(name="os_template", ok=False, detail=f"OS template {wanted!r} is not on the node.")

    @staticmethod
    async def _bridge(client: ProxmoxClient, pve_node: str, spec: ContainerSpec) -> PreflightCheck:
        bridges = {i.iface for i in await client.nodes.network(pve_node, type="bridge")}
        if spec.bridge in bridges:
            return PreflightCheck(name="bridge", ok=True, detail=f"Bridge {spec.bridge!r} exists.")
        return PreflightCheck(name="bridge", ok=False, detail=f"Bridge {spec.bridge!r} does not exist on the node.")

    @staticmethod
    async def _privileges(client: ProxmoxClient) -> PreflightCheck:
        permissions = await client.access.permissions()
        granted = {priv for privs in permissions.values() for priv, allowed in privs.items() if allowed}
        missing = sorted(REQUIRED_PRIVILEGES - granted)
        if missing:
            return PreflightCheck(name="privileges", ok=False, detail=f"The API token lacks: {', '.join(missing)}.")
        return PreflightCheck(name="privileges", ok=True, detail="The API token has the privileges needed.")

    async def _ssh(self, endpoint: NodeEndpoint) -> PreflightCheck:
        runner = pct_runner(endpoint, connect_timeout=self.timeout)
        try:
            await runner.connect()
        except ProxmoxError as exc:
            return PreflightCheck(name="ssh", ok=False, detail=f"SSH to {endpoint.ssh_host} failed: {exc}")
        finally:
            await runner.aclose()
        return PreflightCheck(name="ssh", ok=True, detail=f"SSH to {endpoint.ssh_host} works.")

    @staticmethod
    def _root_options(endpoint: NodeEndpoint, spec: ContainerSpec, ssh_ok: bool) -> PreflightCheck:
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
