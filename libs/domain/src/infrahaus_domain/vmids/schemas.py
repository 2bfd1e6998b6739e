"""Output shapes of the VMID endpoints."""

from datetime import datetime
from typing import Literal

import msgspec

VMID_MIN = 100
VMID_MAX = 999_999_999

VmidReason = Literal["taken", "reserved"]


class VmidList(msgspec.Struct, kw_only=True):
    taken: list[int]
    refreshed_at: datetime


class VmidAvailability(msgspec.Struct, kw_only=True, omit_defaults=True):
    vmid: int
    available: bool
    reason: VmidReason | None = None


class VmidNext(msgspec.Struct, kw_only=True):
    vmid: int
