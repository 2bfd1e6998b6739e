"""Containers, creation: validating a request against its template and accepting it.

Creation is decided in one transaction: the VMID reservation (unique per node), the container row and its queued
`create` operation. The caller commits, and only then sends the job message (see `infrahaus_domain.jobs`); a lost
message is re-sent by the reconciler. Nothing here waits for Proxmox beyond short VMID checks.
"""

import ipaddress
import re
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain import allowlist as v
from infrahaus_domain.containers.errors import NoNodeConfiguredError
from infrahaus_domain.containers.marker import has_marker_line, is_reserved_tag
from infrahaus_domain.containers.placement_schemas import PlacementDecision
from infrahaus_domain.containers.schemas import (
    ContainerCreate,
    ContainerCreated,
    ContainerSpec,
    SpecChoices,
    SpecFile,
    SpecPackage,
    SpecScript,
)
from infrahaus_domain.containers.service import ContainerRepository, ContainerService
from infrahaus_domain.containers.spec_builder import SYNCED_FIELDS, choose_scripts, template_files, template_packages
from infrahaus_domain.errors import FieldError, ValidationFailed
from infrahaus_domain.models.containers import Container, Operation
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.models.templates import Template, TemplateRevision
from infrahaus_domain.operations.service import OperationService, to_operation_read
from infrahaus_domain.service_base import DomainService
from infrahaus_domain.templates.revisions import RevisionService, revision_content
from infrahaus_domain.templates.schemas import TemplateContent
from infrahaus_domain.vmids.errors import VmidTakenError
from infrahaus_domain.vmids.service import VmidService

_NEXT_FREE_ATTEMPTS = 10


class ContainerCreationService(DomainService[Container, ContainerRepository]):
    """Turns a creation request into a stored spec, a reserved VMID, a `creating` container and its operation."""

    repository_type = ContainerRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        containers: ContainerService,
        operations: OperationService,
        vmids: VmidService,
    ) -> None:
        super().__init__(session)
        self.containers = containers
        self.operations = operations
        self.vmids = vmids

    async def resolve(
        self, user_id: UUID, data: ContainerCreate, *, node: Node | None = None
    ) -> tuple[Node, TemplateRevision | None, ContainerSpec]:
        """Validate a creation request and apply the defaults (the template's newest revision, then built-in) without
        the VMID check; returns the node, the revision the spec is built from and the spec.

        `node` is the node placement picked (`node_id: auto`); without it the request's `node_id` or the default node.
        Raises `NoNodeConfiguredError` without a usable node and `ValidationFailed` listing every bad field.
        A missing `vmid` resolves to 0 here; `accept` allocates one.
        """
        errors: list[FieldError] = []
        if node is None:
            node = await self._node(user_id, data.node_id, errors)
        if data.placement is not None and data.node_id not in (None, "auto"):
            errors.append(FieldError(field="placement", message="Give `node_id: auto` (or no node_id) to place."))
        revision: TemplateRevision | None = None
        template: TemplateContent | None = None
        if data.template_id is not None:
            row = await self.session.get(Template, data.template_id)
            if row is None or (row.source != "filesystem" and row.owner_id != user_id):
                errors.append(FieldError(field="template_id", message="Unknown template."))
            else:
                revision = await self._revision(row)
                template = revision_content(revision)

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
        for i, tag in enumerate(tags):
            if is_reserved_tag(tag):
                errors.append(FieldError(field=f"tags[{i}]", message="Reserved for infrahaus's ownership marker."))
        if data.description is not None:
            check("description", v.validate_text, data.description)
            if has_marker_line(data.description):
                errors.append(
                    FieldError(field="description", message="A line naming an infrahaus container is reserved.")
                )
        self._check_network(data, errors)
        if data.ssh_public_keys:
            for i, line in enumerate(data.ssh_public_keys.splitlines()):
                if line.strip() and not _looks_like_ssh_key(line.strip()):
                    errors.append(
                        FieldError(field="ssh_public_keys", message=f"Line {i + 1} is not an SSH public key.")
                    )

        extras: list[str] = []
        for i, name in enumerate(data.packages.extra):
            try:
                spec_name, version = v.parse_package_spec("apt", name)
            except v.UnsafeValueError as exc:
                errors.append(FieldError(field=f"packages.extra[{i}]", message=str(exc)))
                continue
            extras.append(f"{spec_name}={version}" if version else spec_name)
        choices = SpecChoices(
            package_managers=list(data.packages.managers) if data.packages.managers is not None else None,
            extra_packages=extras,
            overrides={name: value for name, value in _given(data).items() if value is not None},
        )
        scripts: list[SpecScript] = []
        files: list[SpecFile] = []
        packages: list[SpecPackage] = template_packages(_EMPTY, choices)
        if template is not None:
            choices.scripts, choices.skipped_scripts = self._choose_scripts(template, data, errors)
            scripts = choose_scripts(template, choices)
            files = template_files(template)
            packages = template_packages(template, choices)
        elif data.scripts:
            errors.append(FieldError(field="scripts", message="Scripts can only be chosen from a template."))

        if errors:
            raise ValidationFailed(errors)
        assert node is not None  # _node raised or appended an error otherwise
        spec = ContainerSpec(
            node_id=node.id,
            vmid=data.vmid or 0,
            hostname=hostname,
            template_id=data.template_id if template else None,
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
            template_revision=revision.number if revision is not None else None,
            choices=choices,
            snapshot_before_scripts=data.snapshot_before_scripts,
        )
        return node, revision, spec

    async def _revision(self, template: Template) -> TemplateRevision:
        """The template's newest revision (recorded now for a template that has none yet)."""
        revisions = RevisionService(session=self.session)
        newest = await revisions.newest(template.id)
        if newest is not None:
            return newest
        if template.source == "filesystem":
            return await revisions.record(template, author="discovery")
        return await revisions.record(template, author="user", user_id=template.owner_id)

    async def accept(
        self,
        user_id: UUID,
        data: ContainerCreate,
        *,
        node: Node | None = None,
        placement: PlacementDecision | None = None,
    ) -> tuple[ContainerCreated, Operation]:
        """Accept a creation: reserve the VMID, insert the container (`creating`) and its queued `create` operation.

        A VMID that is reserved or exists on Proxmox (asked live from the node, see `VmidService.live_taken`) raises
        `VmidTakenError` before anything is queued; two concurrent requests for one (node, vmid) cannot both pass
        (unique reservation). Send the job message only after the caller committed. `node` and `placement`: the node
        `PlacementService` picked and its decision, kept on the operation and in a `placed` event.
        """
        node, revision, spec = await self.resolve(user_id, data, node=node)
        container = await self._reserve_and_insert(user_id, node, spec, data.vmid is not None)
        if revision is not None:
            container.template_revision_id = revision.id
            await self.session.flush()
        params = {"placement": msgspec.to_builtins(placement)} if placement is not None else None
        op = await self.operations.queue(container_id=container.id, user_id=user_id, kind="create", params=params)
        if placement is not None:
            message = f"Placed on {placement.node_name}: {placement.reason}"
            await self.operations.events.record(container.id, "placed", message, msgspec.to_builtins(placement), op.id)
        return ContainerCreated(container=await self.containers.brief(container), operation=to_operation_read(op)), op

    async def _reserve_and_insert(self, user_id: UUID, node: Node, spec: ContainerSpec, vmid_given: bool) -> Container:
        attempts = 1 if vmid_given else _NEXT_FREE_ATTEMPTS
        tried: set[int] = set()
        # The node itself says which ids exist (LXC and QEMU, guests made outside infrahaus too), not only the cache:
        # a guest the cache does not know yet must never be accepted as free. The cache is refreshed by the answer.
        taken = await self.vmids.live_taken(node)
        for _ in range(attempts):
            if vmid_given:
                vmid = spec.vmid
                availability = await self.vmids.check(node, vmid, taken=taken)
                if not availability.available:
                    raise VmidTakenError(f"VMID {vmid} is already {availability.reason or 'taken'} on this node.")
            else:
                # Concurrent creations are handed the same candidate; each retry moves past the ones it lost.
                vmid = (await self.vmids.next_free(node, taken=taken)).vmid
                while vmid in tried or not (await self.vmids.check(node, vmid, taken=taken)).available:
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
                    await self.vmids.reserve(node, vmid, container.id)
            except VmidTakenError:
                if vmid_given:
                    raise
                continue
            return container
        raise VmidTakenError("No free VMID could be reserved on this node; try again.")

    async def _node(self, user_id: UUID, node_id: str | None, errors: list[FieldError]) -> Node | None:
        if node_id == "auto":
            # Only `PlacementService` resolves `auto` (it passes the node it picked).
            errors.append(FieldError(field="node_id", message="`auto` is resolved by placement."))
            return None
        if node_id is not None:
            node = await self.session.get(Node, UUID(node_id))
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
    def _choose_scripts(
        template: TemplateContent, data: ContainerCreate, errors: list[FieldError]
    ) -> tuple[list[str] | None, list[str]]:
        """The scripts chosen by the request (names in run order) and the template's scripts it leaves out; `None`
        when the request chooses none (the template's enabled scripts run)."""
        if data.scripts is None:
            return None, []
        by_id = {s.id: s for s in template.scripts}
        chosen: list[str] = []
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
                chosen.append(script.name)
        return chosen, [s.name for s in template.scripts if s.name not in chosen]

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
            errors.append(FieldError(field="network.mode", message="Set mode to `static` to give ip_cidr and gateway."))
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
                errors.append(
                    FieldError(field="ipv6.mode", message="Set mode to `static` to give ip_cidr and gateway.")
                )
        if data.nameserver is not None:
            for server in data.nameserver.split():
                try:
                    if not _IP_TEXT.fullmatch(server):
                        raise ValueError(server)
                    ipaddress.ip_address(server)
                except ValueError:
                    errors.append(FieldError(field="nameserver", message=f"{server!r:.60} is not an IP address."))


_EMPTY = TemplateContent(
    name="",
    description="",
    tags=[],
    os_template=None,
    cores=1,
    memory_mb=512,
    swap_mb=512,
    disk_gb=8,
    storage="local-lvm",
    bridge="vmbr0",
    unprivileged=True,
    nesting=False,
    keyctl=False,
    fuse=False,
    scripts=[],
    files=[],
    packages=[],
)


def _given(data: ContainerCreate) -> dict[str, object]:
    """The resource values a request gives explicitly (None: not given, the template's value applies)."""
    given: dict[str, object] = {
        "cores": data.cores,
        "memory_mb": data.memory_mb,
        "swap_mb": data.swap_mb,
        "bridge": data.bridge,
        "nesting": data.features.nesting,
        "keyctl": data.features.keyctl,
        "fuse": data.features.fuse,
    }
    assert set(given) == set(SYNCED_FIELDS)
    return given


# Digits, hex letters, dots and colons, with an optional prefix length: no IPv6 zone (`fe80::1%eth0` would let
# `,`, `=` or spaces into the net0 property string), no whitespace.
_IP_TEXT = re.compile(r"[0-9A-Fa-f.:]{2,45}")
_INTERFACE_TEXT = re.compile(r"[0-9A-Fa-f.:]{2,45}/[0-9]{1,3}")


def _check_interface(value: str, version: int, field: str, errors: list[FieldError]) -> None:
    if not _INTERFACE_TEXT.fullmatch(value):
        errors.append(FieldError(field=field, message=f"Must be an IPv{version} address with a prefix length."))
        return
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        errors.append(FieldError(field=field, message=f"Not an IPv{version} address with prefix, e.g. 192.0.2.10/24."))
        return
    if iface.version != version or "/" not in value:
        errors.append(FieldError(field=field, message=f"Must be an IPv{version} address with a prefix length."))


def _check_address(value: str, version: int, field: str, errors: list[FieldError]) -> None:
    if not _IP_TEXT.fullmatch(value):
        errors.append(FieldError(field=field, message=f"Not an IPv{version} address."))
        return
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
