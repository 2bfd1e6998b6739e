"""Containers, write side: accepting a creation, lifecycle requests, and what the worker records about a container.

Creation is decided in one transaction: the VMID reservation (unique per node), the container row and its queued
`create` operation. The caller commits, and only then sends the job message (see `infrahaus_domain.jobs`); a lost
message is re-sent by the reconciler. Nothing here waits for Proxmox beyond short status reads.
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.containers.errors import (
    ContainerBusyError,
    InvalidStateError,
    NoNodeConfiguredError,
)
from infrahaus_domain.containers.schemas import (
    ContainerBrief,
    ContainerCreate,
    ContainerCreated,
    ContainerSpec,
    NamedRef,
    ServiceInfo,
    SpecFile,
    SpecPackage,
    SpecScript,
)
from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import FieldError, NotFoundError, ValidationFailed
from infrahaus_domain.events.service import EventService
from infrahaus_domain.idempotency import IdempotencyKeys, StoredResponse, request_hash
from infrahaus_domain.models.containers import (
    Container,
    DiscoveredService,
    Operation,
    ServiceCredential,
)
from infrahaus_domain.models.nodes import Node, VmidReservation
from infrahaus_domain.models.templates import Template
from infrahaus_domain.operations.schemas import OperationRead
from infrahaus_domain.operations.service import OperationService, to_operation_read
from infrahaus_domain.templates import validation as v
from infrahaus_domain.vmids.errors import VmidTakenError
from infrahaus_domain.vmids.service import VmidService

# The idempotency scope of a creation (the same as the API route, so keys stored before scopes existed still match).
CREATE_SCOPE = "POST /api/containers"
DEFAULT_SHUTDOWN_TIMEOUT = 60
_NEXT_FREE_ATTEMPTS = 10


class NodeProbe(Protocol):
    """The live read the lifecycle rules need (implemented in `containers.probe`)."""

    async def live_status(self, node: Node, vmid: int) -> str:
        """`running`, `stopped`, ... for the guest; raises a domain error when the node cannot be asked."""
        ...


@dataclass(frozen=True)
class Accepted:
    """The answer to a creating request: status, body and Location (also what an idempotent replay returns)."""

    status: int
    body: dict[str, Any]
    location: str | None
    operation_id: UUID | None
    replayed: bool = False


def _now() -> datetime:
    return datetime.now(UTC)


class ContainerService:
    """Business rules of containers (write side). Never commits: the caller's unit of work does."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        events: EventService,
        operations: OperationService,
        box: SecretBox | None = None,
    ) -> None:
        self.session = session
        self.events = events
        self.operations = operations
        self.box = box

    # ------------------------------------------------------------------ reads

    async def get_for_user(self, container_id: UUID, user_id: UUID) -> Container:
        """The user's container; another user's answers exactly like a missing one."""
        container = await self.session.get(Container, container_id)
        if container is None or container.user_id != user_id:
            raise NotFoundError("Container not found.")
        return container

    async def get(self, container_id: UUID) -> Container | None:
        return await self.session.get(Container, container_id, populate_existing=True)

    @staticmethod
    def spec(container: Container) -> ContainerSpec:
        """The stored creation spec of a container (what the worker creates and provisions)."""
        return msgspec.convert(container.request, ContainerSpec)

    async def brief(self, container: Container) -> ContainerBrief:
        node = await self.session.get(Node, container.node_id)
        template = await self.session.get(Template, container.template_id) if container.template_id else None
        return ContainerBrief(
            id=container.id,
            node=NamedRef(id=container.node_id, name=node.name if node else ""),
            vmid=container.vmid,
            hostname=container.hostname,
            template=NamedRef(id=template.id, name=template.name) if template else None,
            lifecycle=container.lifecycle,  # type: ignore[arg-type]
            ip_address=container.ip_address,
            created_at=container.created_at,
            updated_at=container.updated_at,
        )

    # ------------------------------------------------------------------ creation

    async def resolve(self, user_id: UUID, data: ContainerCreate) -> tuple[Node, Template | None, ContainerSpec]:
        """Validate a creation request and apply the defaults (template, then built-in) without the VMID check.

        Raises `NoNodeConfiguredError` without a usable node and `ValidationFailed` listing every bad field.
        A missing `vmid` resolves to 0 here; `create` allocates one.
        """
        errors: list[FieldError] = []
        node = await self._node(user_id, data.node_id, errors)
        template: Template | None = None
        if data.template_id is not None:
            template = await self.session.get(Template, data.template_id)
            if template is None or (template.source != "filesystem" and template.owner_id != user_id):
                errors.append(FieldError(field="template_id", message="Unknown template."))
                template = None

        def pick(value: Any, attr: str, default: Any) -> Any:
            if value is not None:
                return value
            return getattr(template, attr) if template is not None else default

        def check(field: str, fn: Any, value: Any) -> Any:
            try:
                return fn(value)
            except v.UnsafeValueError as exc:
                errors.append(FieldError(field=field, message=str(exc)))
                return value

        hostname = check("hostname", v.validate_hostname, data.hostname)
        os_template = pick(data.os_template, "os_template", None)
        if os_template is None:
            errors.append(FieldError(field="os_template", message="Required (the template names none)."))
            os_template = ""
        else:
            os_template = check("os_template", v.validate_os_template, os_template)
        storage = check("storage", v.validate_storage, pick(data.storage, "storage", "local-lvm"))
        bridge = check("bridge", v.validate_bridge, pick(data.bridge, "bridge", "vmbr0"))
        tags = [check(f"tags[{i}]", v.validate_tag, t) for i, t in enumerate(data.tags)]
        if data.description is not None:
            check("description", v.validate_text, data.description)
        self._check_network(data, errors)
        if data.ssh_public_keys:
            for i, line in enumerate(data.ssh_public_keys.splitlines()):
                if line.strip() and not _looks_like_ssh_key(line.strip()):
                    errors.append(
                        FieldError(field="ssh_public_keys", message=f"Line {i + 1} is not an SSH public key.")
                    )

        scripts: list[SpecScript] = []
        files: list[SpecFile] = []
        packages: list[SpecPackage] = []
        if template is not None:
            scripts = self._choose_scripts(template, data, errors)
            files = [
                SpecFile(name=f.name, target_path=f.target_path, policy=f.policy, mode=f.mode, content=f.content)
                for f in template.files
            ]
            managers = set(data.packages.managers) if data.packages.managers is not None else None
            packages = [
                SpecPackage(name=p.name, manager=p.manager, version=p.version)
                for p in template.packages
                if managers is None or p.manager in managers
            ]
        elif data.scripts:
            errors.append(FieldError(field="scripts", message="Scripts can only be chosen from a template."))
        for i, name in enumerate(data.packages.extra):
            try:
                spec_name, version = v.parse_package_spec("apt", name)
            except v.UnsafeValueError as exc:
                errors.append(FieldError(field=f"packages.extra[{i}]", message=str(exc)))
                continue
            if not any(p.manager == "apt" and p.name == spec_name for p in packages):
                packages.append(SpecPackage(name=spec_name, manager="apt", version=version))

        if errors:
            raise ValidationFailed(errors)
        assert node is not None  # _node raised or appended an error otherwise
        spec = ContainerSpec(
            node_id=node.id,
            vmid=data.vmid or 0,
            hostname=hostname,
            template_id=template.id if template else None,
            template_name=template.name if template else None,
            os_template=os_template,
            cores=pick(data.cores, "cores", 1),
            memory_mb=pick(data.memory_mb, "memory_mb", 512),
            swap_mb=pick(data.swap_mb, "swap_mb", 512),
            disk_gb=pick(data.disk_gb, "disk_gb", 8),
            storage=storage,
            bridge=bridge,
            network=data.network,
            ipv6=data.ipv6,
            nameserver=data.nameserver,
            ssh_public_keys=data.ssh_public_keys,
            unprivileged=pick(data.unprivileged, "unprivileged", True),
            nesting=pick(data.features.nesting, "nesting", False),
            keyctl=pick(data.features.keyctl, "keyctl", False),
            fuse=pick(data.features.fuse, "fuse", False),
            tags=tags,
            onboot=data.onboot,
            start_after_create=data.start_after_create,
            description=data.description,
            scripts=scripts,
            files=files,
            packages=packages,
        )
        return node, template, spec

    async def create(
        self,
        user_id: UUID,
        data: ContainerCreate,
        *,
        vmids: VmidService,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Accept a creation: reserve the VMID, insert the container (`creating`) and its queued `create` operation.

        With an `idempotency_key`, the same key and body within 24 h replays the first answer and another body
        raises `IdempotencyKeyReusedError`. A VMID that is reserved or exists on Proxmox raises `VmidTakenError`; two
        concurrent requests for one (node, vmid) cannot both pass (unique reservation). Send the job message only
        after the caller committed.
        """
        keys = IdempotencyKeys(self.session)
        claim = await keys.claim(user_id, CREATE_SCOPE, idempotency_key, data)
        if claim.replay is not None:
            replay = claim.replay
            return Accepted(
                status=replay.status, body=replay.body, location=replay.location, operation_id=None, replayed=True
            )

        node, _template, spec = await self.resolve(user_id, data)
        container = await self._reserve_and_insert(user_id, node, spec, data.vmid is not None, vmids)
        op = await self.operations.create(container_id=container.id, user_id=user_id, kind="create")
        body = ContainerCreated(container=await self.brief(container), operation=to_operation_read(op))
        accepted = Accepted(
            status=202, body=msgspec.to_builtins(body), location=f"/api/operations/{op.id}", operation_id=op.id
        )
        await keys.record(claim, StoredResponse(status=accepted.status, body=accepted.body, location=accepted.location))
        return accepted

    async def _reserve_and_insert(
        self, user_id: UUID, node: Node, spec: ContainerSpec, vmid_given: bool, vmids: VmidService
    ) -> Container:
        attempts = 1 if vmid_given else _NEXT_FREE_ATTEMPTS
        tried: set[int] = set()
        for _ in range(attempts):
            if vmid_given:
                vmid = spec.vmid
                availability = await vmids.check(node, vmid)
                if not availability.available:
                    raise VmidTakenError(f"VMID {vmid} is already {availability.reason or 'taken'} on this node.")
            else:
                # Concurrent creations are handed the same candidate; each retry moves past the ones it lost.
                vmid = (await vmids.next_free(node)).vmid
                while vmid in tried or not (await vmids.check(node, vmid)).available:
                    vmid += 1
                tried.add(vmid)
            resolved = msgspec.structs.replace(spec, vmid=vmid)
            container = Container(
                user_id=user_id,
                node_id=node.id,
                vmid=vmid,
                hostname=resolved.hostname,
                template_id=resolved.template_id,
                lifecycle="creating",
                request=msgspec.to_builtins(resolved),
            )
            try:
                async with self.session.begin_nested():
                    self.session.add(container)
                    await self.session.flush()
                    # The unique (node_id, vmid) reservation decides between concurrent creations.
                    await vmids.reserve(node, vmid, container.id)
            except VmidTakenError:
                if vmid_given:
                    raise
                continue
            return container
        raise VmidTakenError("No free VMID could be reserved on this node; try again.")

    async def _node(self, user_id: UUID, node_id: UUID | None, errors: list[FieldError]) -> Node | None:
        if node_id is not None:
            node = await self.session.get(Node, node_id)
            if node is None or node.user_id != user_id:
                errors.append(FieldError(field="node_id", message="Unknown node."))
                return None
            return node
        node = await self.session.scalar(
            select(Node).where(Node.user_id == user_id).order_by(Node.is_default.desc(), Node.created_at).limit(1)
        )
        if node is None:
            raise NoNodeConfiguredError("No node is configured: register a Proxmox node first (POST /api/nodes).")
        return node

    @staticmethod
    def _choose_scripts(template: Template, data: ContainerCreate, errors: list[FieldError]) -> list[SpecScript]:
        by_id = {s.id: s for s in template.scripts}
        if data.scripts is None:
            return [SpecScript(id=s.id, name=s.name, content=s.content) for s in template.scripts if s.enabled]
        chosen: list[SpecScript] = []
        seen: set[UUID] = set()
        for i, choice in enumerate(data.scripts):
            script = by_id.get(choice.id)
            if script is None:
                errors.append(FieldError(field=f"scripts[{i}].id", message="Not a script of this template."))
                continue
            if choice.id in seen:
                errors.append(FieldError(field=f"scripts[{i}].id", message="Listed twice."))
                continue
            seen.add(choice.id)
            if choice.enabled:
                chosen.append(SpecScript(id=script.id, name=script.name, content=script.content))
        return chosen

    @staticmethod
    def _check_network(data: ContainerCreate, errors: list[FieldError]) -> None:
        net = data.network
        if net.mode == "static":
            if not net.ip_cidr:
                errors.append(FieldError(field="network.ip_cidr", message="Required for a static network."))
            else:
                _check_interface(net.ip_cidr, 4, "network.ip_cidr", errors)
            if net.gateway:
                _check_address(net.gateway, 4, "network.gateway", errors)
        elif net.ip_cidr or net.gateway:
            errors.append(FieldError(field="network.mode", message="ip_cidr and gateway need mode 'static'."))
        if data.ipv6 is not None:
            net6 = data.ipv6
            if net6.mode == "static":
                if not net6.ip_cidr:
                    errors.append(FieldError(field="ipv6.ip_cidr", message="Required for a static network."))
                else:
                    _check_interface(net6.ip_cidr, 6, "ipv6.ip_cidr", errors)
                if net6.gateway:
                    _check_address(net6.gateway, 6, "ipv6.gateway", errors)
            elif net6.ip_cidr or net6.gateway:
                errors.append(FieldError(field="ipv6.mode", message="ip_cidr and gateway need mode 'static'."))
        if data.nameserver is not None:
            for server in data.nameserver.split():
                try:
                    ipaddress.ip_address(server)
                except ValueError:
                    errors.append(FieldError(field="nameserver", message=f"{server!r} is not an IP address."))

    # ------------------------------------------------------------------ lifecycle requests

    async def request_action(
        self,
        container_id: UUID,
        user_id: UUID,
        kind: str,
        *,
        probe: NodeProbe,
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
        status = await probe.live_status(node, container.vmid)
        needed = "stopped" if kind == "start" else "running"
        if status != needed:
            raise InvalidStateError(f"The container is {status}; {kind} needs it {needed}.")
        return await self.operations.create(container_id=container.id, user_id=user_id, kind=kind, params=params)

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
        return await self.operations.create(container_id=container.id, user_id=user_id, kind="delete")

    async def request_retry(self, container_id: UUID, user_id: UUID) -> Operation:
        """Re-run a failed creation from the stored spec: a new `create` operation, lifecycle back to `creating`.

        The VMID reservation is kept; `pve_created_by_operation` still names the failed operation, so the worker
        knows a Proxmox container of this record may already exist.
        """
        container = await self.get_for_user(container_id, user_id)
        latest = await self.operations.latest_for_container(container.id)
        if container.lifecycle != "error" or latest is None or latest.kind != "create" or latest.status != "failed":
            raise InvalidStateError("Only a container whose creation failed can be retried.")
        op = await self.operations.create(container_id=container.id, user_id=user_id, kind="create")
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
    ) -> None:
        """Record facts learnt on Proxmox; only the given fields change.

        Set `pve_created_by_operation` right after the Proxmox create task succeeded: a redelivered message of the
        same operation then finds it and continues instead of creating the container again.
        """
        container = await self._require(container_id)
        if vmid is not None:
            container.vmid = vmid
        if ip_address is not None:
            container.ip_address = ip_address
        if pve_created_by_operation is not None:
            container.pve_created_by_operation = pve_created_by_operation
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
        """Remove the container record (after Proxmox destroyed it), its reservation, services, credentials and
        events. Its operations stay readable (their `container_id` becomes null)."""
        await self.session.execute(
            update(Operation).where(Operation.container_id == container_id).values(container_id=None)
        )
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


def _check_interface(value: str, version: int, field: str, errors: list[FieldError]) -> None:
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        errors.append(FieldError(field=field, message=f"Not an IPv{version} address with prefix, e.g. 192.0.2.10/24."))
        return
    if iface.version != version or "/" not in value:
        errors.append(FieldError(field=field, message=f"Must be an IPv{version} address with a prefix length."))


def _check_address(value: str, version: int, field: str, errors: list[FieldError]) -> None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        errors.append(FieldError(field=field, message=f"Not an IPv{version} address."))
        return
    if address.version != version:
        errors.append(FieldError(field=field, message=f"Must be an IPv{version} address."))


_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


def _looks_like_ssh_key(line: str) -> bool:
    parts = line.split()
    return (
        len(parts) >= 2
        and (parts[0] in _KEY_TYPES or parts[0].startswith("sk-"))
        and all(c.isalnum() or c in "+/=" for c in parts[1])
    )


__all__ = ["Accepted", "ContainerService", "NodeProbe", "OperationRead", "request_hash"]
