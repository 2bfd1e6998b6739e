"""Proxmox task ids (UPIDs): `UPID:node:pid:pstart:starttime:type:id:user:`.

pid, pstart and starttime are upper-case hex (8 digits; pstart may have 9 on long-running
hosts). The pattern is the one `PVE::Tools::upid_decode` accepts.
"""

import re

_UPID_RE = re.compile(
    r"^UPID:"
    r"(?P<node>[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?):"
    r"(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):"
    r"(?P<starttime>[0-9A-Fa-f]{8}):"
    r"(?P<type>[^:\s]+):"
    r"(?P<id>[^:\s]*):"
    r"(?P<user>[^:\s]+):\Z"
)


class Upid(str):
    """A validated UPID. It is the UPID string itself, with its decoded parts as attributes."""

    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str

    def __new__(cls, value: str) -> "Upid":
        match = _UPID_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"not a Proxmox UPID: {value!r:.120}")
        upid = super().__new__(cls, value)
        upid.node = match["node"]
        upid.pid = int(match["pid"], 16)
        upid.pstart = int(match["pstart"], 16)
        upid.starttime = int(match["starttime"], 16)
        upid.type = match["type"]
        upid.id = match["id"]
        upid.user = match["user"]
        return upid

    @classmethod
    def build(cls, *, node: str, pid: int, pstart: int, starttime: int, type: str, id: str, user: str) -> "Upid":
        """Compose a UPID the way Proxmox formats one (used by the simulator and tests)."""
        return cls(f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:")


def parse_upid(value: str) -> Upid:
    """Parse and validate a UPID string; raises ValueError on anything that is not one."""
    return Upid(value)
