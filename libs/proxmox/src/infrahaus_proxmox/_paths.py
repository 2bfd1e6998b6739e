"""Validated path segments: names from callers never change which URL is called."""

import re
from urllib.parse import quote

_NODE_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_STORAGE_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]$")
MIN_VMID = 100
MAX_VMID = 999_999_999


def node_segment(node: str) -> str:
    """A node name as Proxmox allows it (``pve-node``); ValueError otherwise."""
    if not isinstance(node, str) or not _NODE_RE.fullmatch(node):
        raise ValueError(f"invalid node name {node!r:.80}")
    return node


def storage_segment(storage: str) -> str:
    """A storage id (``pve-storage-id``); ValueError otherwise."""
    if not isinstance(storage, str) or not _STORAGE_RE.fullmatch(storage):
        raise ValueError(f"invalid storage id {storage!r:.80}")
    return storage


def vmid_segment(vmid: int) -> str:
    """A guest id in Proxmox's range 100..999999999; ValueError otherwise."""
    if isinstance(vmid, bool) or not isinstance(vmid, int) or not MIN_VMID <= vmid <= MAX_VMID:
        raise ValueError(f"invalid vmid {vmid!r:.80}")
    return str(vmid)


def quoted_segment(value: str) -> str:
    """Any other value (e.g. a UPID) percent-encoded so it stays one path segment."""
    return quote(value, safe=":@!")
