"""What infrahaus needs a node's API token to be allowed to do, per ACL path, and what a token lacks.

The needs follow Proxmox's own checks for the calls infrahaus makes (pve-container ``src/PVE/API2/LXC.pm``
``create_vm`` and ``src/PVE/LXC.pm`` ``check_ct_modify_config_perm``; ``API2/LXC/Status.pm``; pve-storage
``Storage.pm`` ``check_volume_access``; pve-guest-common ``GuestHelpers.pm`` ``check_vnet_access``; pve-manager
``API2/Nodes.pm`` ``status``, ``API2/Network.pm`` ``index``, ``API2/Cluster.pm`` ``resources``):

- on the container (``/vms/<vmid>``): ``VM.Allocate`` to create and destroy it (and to set ``nesting``),
  ``VM.Config.CPU`` (cores), ``VM.Config.Memory`` (memory, swap), ``VM.Config.Disk`` (rootfs),
  ``VM.Config.Network`` (hostname, nameserver, net0), ``VM.Config.Options`` (ostype, onboot, tags,
  description), ``VM.PowerMgmt`` (start, stop, shutdown, reboot), ``VM.Audit`` (status, config, interfaces, and
  seeing other guests' VMIDs in /cluster/resources);
- on the storage for its disk: ``Datastore.AllocateSpace``; on the template's storage:
  ``Datastore.AllocateSpace`` or ``Datastore.Audit`` (also what lists storages and templates);
- on its bridge (``/sdn/zones/localnetwork/<bridge>``): ``SDN.Use`` (a bridge without it is not even listed);
- on the node (``/nodes/<node>``): ``Sys.Audit`` (node status, other tokens' tasks).

The effective set is read per path with ``GET /access/permissions?path=`` (inheritance included; without a path
Proxmox lists only paths that carry an ACL: pve-access-control ``RPCEnvironment.pm`` ``get_effective_permissions``).
A token with privilege separation holds only what both it and its user hold.
"""

import dataclasses
from collections.abc import Iterable, Sequence

import msgspec

from infrahaus_proxmox import ProxmoxClient

VM_PRIVILEGES = (
    "VM.Allocate",
    "VM.Audit",
    "VM.Config.CPU",
    "VM.Config.Disk",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.PowerMgmt",
)
DISK_STORAGE_PRIVILEGES = ("Datastore.AllocateSpace",)
TEMPLATE_STORAGE_PRIVILEGES = ("Datastore.AllocateSpace", "Datastore.Audit")  # any one of them
BRIDGE_PRIVILEGES = ("SDN.Use",)
NODE_PRIVILEGES = ("Sys.Audit",)
# The minimal role the README's `pveum role add` makes: every privilege above, valid on PVE 8 and 9.
ROLE_PRIVILEGES = tuple(
    sorted(
        {*VM_PRIVILEGES, *DISK_STORAGE_PRIVILEGES, *TEMPLATE_STORAGE_PRIVILEGES, *BRIDGE_PRIVILEGES, *NODE_PRIVILEGES}
    )
)
# Where the README's `pveum acl modify` puts that role (propagating), for the token and its user.
ROLE_PATHS = ("/vms", "/storage", "/sdn/zones/localnetwork", "/nodes")


class MissingPrivilege(msgspec.Struct, kw_only=True, frozen=True):
    """Privileges the token lacks on one ACL path (with `any_of`, one of them would do) and what needs them."""

    path: str
    privileges: list[str]
    any_of: bool = False
    needed_for: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrivilegeNeed:
    path: str
    privileges: tuple[str, ...]
    needed_for: str
    any_of: bool = False


def container_needs(
    *, pve_node: str, vmid: int, storage: str, template_storage: str | None, bridge: str
) -> list[PrivilegeNeed]:
    """What creating and operating one container needs, path by path."""
    needs = [
        PrivilegeNeed(path=f"/vms/{vmid}", privileges=VM_PRIVILEGES, needed_for="creating and operating the container"),
        PrivilegeNeed(path=f"/storage/{storage}", privileges=DISK_STORAGE_PRIVILEGES, needed_for="its disk"),
        PrivilegeNeed(
            path=f"/sdn/zones/localnetwork/{bridge}", privileges=BRIDGE_PRIVILEGES, needed_for="its network device"
        ),
        PrivilegeNeed(path=f"/nodes/{pve_node}", privileges=NODE_PRIVILEGES, needed_for="reading the node's status"),
    ]
    if template_storage is not None:
        needs.append(
            PrivilegeNeed(
                path=f"/storage/{template_storage}",
                privileges=TEMPLATE_STORAGE_PRIVILEGES,
                any_of=True,
                needed_for="reading its OS template",
            )
        )
    return needs


def lacking(need: PrivilegeNeed, held: Iterable[str]) -> MissingPrivilege | None:
    """What of `need` is not in `held` (None when it is met)."""
    have = set(held)
    if need.any_of:
        if have & set(need.privileges):
            return None
        missing = list(need.privileges)
    else:
        missing = [p for p in need.privileges if p not in have]
        if not missing:
            return None
    return MissingPrivilege(path=need.path, privileges=missing, any_of=need.any_of, needed_for=need.needed_for)


async def held_at(client: ProxmoxClient, path: str) -> set[str]:
    """The token's effective privileges at exactly `path` (inherited ones included)."""
    answer = await client.access.permissions(path)
    return set(answer.get(path, {}))


async def missing_privileges(client: ProxmoxClient, needs: Sequence[PrivilegeNeed]) -> list[MissingPrivilege]:
    """Every need the token does not meet, asking Proxmox once per path."""
    held: dict[str, set[str]] = {}
    missing: list[MissingPrivilege] = []
    for need in needs:
        if need.path not in held:
            held[need.path] = await held_at(client, need.path)
        if (gap := lacking(need, held[need.path])) is not None:
            missing.append(gap)
    return missing


async def node_missing_privileges(client: ProxmoxClient, pve_node: str) -> list[MissingPrivilege]:
    """What the token lacks for what infrahaus does on a node, before any container is asked for.

    The container privileges are read for the VMID a new container would get (``/cluster/nextid``); storages and
    bridges are met when the token holds the privilege on the family (``/storage``, ``/sdn/zones/localnetwork``)
    or on at least one member the node lists (storages that hold containers or templates, bridges)."""
    vmid = await client.cluster.nextid()
    needs = [
        PrivilegeNeed(path=f"/vms/{vmid}", privileges=VM_PRIVILEGES, needed_for="creating and operating containers"),
        PrivilegeNeed(path=f"/nodes/{pve_node}", privileges=NODE_PRIVILEGES, needed_for="reading the node's status"),
    ]
    missing = await missing_privileges(client, needs)
    disk_paths = [f"/storage/{s.storage}" for s in await client.storage.list(pve_node, content="rootdir")]
    template_paths = [f"/storage/{s.storage}" for s in await client.storage.list(pve_node, content="vztmpl")]
    bridge_paths = [f"/sdn/zones/localnetwork/{i.iface}" for i in await client.nodes.network(pve_node, type="bridge")]
    families = (
        ("/storage", disk_paths, DISK_STORAGE_PRIVILEGES, False, "container disks on a storage that holds them"),
        ("/storage", template_paths, TEMPLATE_STORAGE_PRIVILEGES, True, "reading OS templates on a storage"),
        ("/sdn/zones/localnetwork", bridge_paths, BRIDGE_PRIVILEGES, False, "attaching containers to a bridge"),
    )
    for family, members, privileges, any_of, needed_for in families:
        need = PrivilegeNeed(path=family, privileges=privileges, any_of=any_of, needed_for=needed_for)
        met = False
        for path in [family, *members]:
            if lacking(dataclasses.replace(need, path=path), await held_at(client, path)) is None:
                met = True
                break
        if not met:
            gap = lacking(need, set())
            assert gap is not None
            missing.append(gap)
    return missing


def describe(missing: Sequence[MissingPrivilege]) -> str:
    """One sentence naming every missing privilege and its path."""
    parts = [f"{' or '.join(m.privileges) if m.any_of else ', '.join(m.privileges)} on {m.path}" for m in missing]
    return "The node's API token lacks " + "; ".join(parts) + "."
