"""Errors of VMID handling."""

from infrahaus_domain.errors import ConflictError


class VmidTakenError(ConflictError):
    """The (node, vmid) is already held by an accepted creation or exists on Proxmox."""

    code = "vmid_taken"
