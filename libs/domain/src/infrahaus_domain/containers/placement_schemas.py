"""Shapes of automatic placement: what a creation asks for (`placement`) and what infrahaus decided (kept on the
operation, in the `placed` event and in a preflight report). Apart from `containers.schemas` so that
`operations.schemas` can name the decision without an import cycle."""

from typing import Annotated, Literal
from uuid import UUID

import msgspec

Strategy = Literal["most_free", "spread"]


class PlacementRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How to pick the node when `node_id` is `auto` or omitted with `placement` given.

    `most_free`: the eligible node with the most available memory; `spread`: the one with the fewest guests (LXC
    and QEMU). `require_storage` / `require_bridge` are the storage and bridge the container gets (default: the
    request's or the template's); a node without them, or without room for the disk, is skipped. `avoid_tags`: skip
    nodes already running a guest carrying any of these tags (keeps replicas apart).
    """

    strategy: Strategy = "most_free"
    require_storage: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    require_bridge: Annotated[str, msgspec.Meta(min_length=1, max_length=15)] | None = None
    avoid_tags: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=32)] = (
        msgspec.field(default_factory=list)
    )


class PlacementFigures(msgspec.Struct, kw_only=True):
    """What the node reported (null: not known, e.g. the node did not answer)."""

    memory_available: Annotated[
        int | None, msgspec.Meta(description="Bytes (`memory.available` of the node's status).")
    ]
    memory_total: Annotated[int | None, msgspec.Meta(description="Bytes.")]
    storage_avail: Annotated[int | None, msgspec.Meta(description="Free bytes on the required storage.")]
    guests: Annotated[int | None, msgspec.Meta(description="Guests (LXC and QEMU) on the node.")]


class PlacementCandidate(msgspec.Struct, kw_only=True):
    """One of the user's nodes as placement saw it: `picked`, `eligible` (not picked), or `skipped` with every
    reason."""

    node_id: UUID
    node_name: str
    outcome: Literal["picked", "eligible", "skipped"]
    reasons: list[str]
    figures: PlacementFigures


class PlacementDecision(msgspec.Struct, kw_only=True):
    """The node placement picked (null when none was eligible), why, and every candidate with its figures."""

    strategy: Strategy
    storage: str
    bridge: str
    node_id: UUID | None
    node_name: str | None
    reason: str
    candidates: list[PlacementCandidate]
