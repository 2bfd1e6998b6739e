"""The ownership marker: what every guest infrahaus creates carries on Proxmox, naming the container it belongs to.

- Tags ``infrahaus`` and ``ih-<the last 12 hex digits of the container id>`` (the random part of a UUIDv7): valid
  Proxmox tags whatever Proxmox does to them (it lower-cases, de-duplicates, sorts and joins them with ``;``,
  pve-guest-common ``GuestHelpers.pm`` ``get_unique_tags``), shown in the node's guest list and the web UI.
- The description's first line ``infrahaus-container: <container id>``; the user's description follows it.
  Proxmox stores the description as comment lines and reads each back with a trailing newline
  (pve-container ``LXC/Config.pm`` ``parse_pct_config``).

Both are written by the create call itself (no extra privilege: ``VM.Config.Options``, which a creation needs
anyway). The full id in the description is exact; the short tag keeps the guest recognisable when only the tags are
read. A guest is ours when its marker names this container and nothing in it names another one.
"""

import re
from collections.abc import Iterable
from typing import Literal, NamedTuple
from uuid import UUID

MARKER_TAG = "infrahaus"
SHORT_TAG_PREFIX = "ih-"
DESCRIPTION_KEY = "infrahaus-container"

_SHORT = re.compile(r"ih-([0-9a-f]{12})")
_LINE = re.compile(rf"{DESCRIPTION_KEY}:[ \t]*(\S*)[ \t]*")
_TAG_SEPARATORS = re.compile(r"[;,\s]+")

Ownership = Literal["ours", "absent", "other"]


class Marker(NamedTuple):
    """What a guest's tags and description say about who made it."""

    tagged: bool  # the `infrahaus` tag
    container_ids: frozenset[str]  # ids named by `infrahaus-container:` description lines
    short_ids: frozenset[str]  # the 12 hex digits of `ih-` tags

    @property
    def names_anything(self) -> bool:
        return bool(self.container_ids or self.short_ids)


def short_tag(container_id: UUID) -> str:
    """The ``ih-…`` tag of a container."""
    return f"{SHORT_TAG_PREFIX}{container_id.hex[-12:]}"


def marker_tags(container_id: UUID) -> list[str]:
    return [MARKER_TAG, short_tag(container_id)]


def description_line(container_id: UUID) -> str:
    return f"{DESCRIPTION_KEY}: {container_id}"


def tags_with_marker(container_id: UUID, tags: Iterable[str]) -> list[str]:
    """The marker tags followed by `tags` without any marker tag of their own (a copied marker never survives)."""
    kept = [t for t in tags if not is_reserved_tag(t)]
    return [*marker_tags(container_id), *dict.fromkeys(kept)]


def description_with_marker(container_id: UUID, description: str | None) -> str:
    """The marker line, then `description` without marker lines of its own."""
    lines = [line for line in (description or "").splitlines() if not _LINE.fullmatch(line.strip())]
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join([description_line(container_id), *lines])


def is_reserved_tag(tag: str) -> bool:
    """True for tags only infrahaus's marker may use (a user tag must not look like a marker)."""
    lowered = tag.strip().lower()
    return lowered == MARKER_TAG or lowered.startswith(SHORT_TAG_PREFIX)


def has_marker_line(description: str) -> bool:
    return any(_LINE.fullmatch(line.strip()) for line in description.splitlines())


def split_tags(tags: str | Iterable[str] | None) -> list[str]:
    """Proxmox's tag list (``a;b``, also ``,`` or spaces) or a list of tags, lower-cased."""
    if tags is None:
        return []
    items = _TAG_SEPARATORS.split(tags) if isinstance(tags, str) else list(tags)
    return [t.strip().lower() for t in items if t.strip()]


def read_marker(tags: str | Iterable[str] | None, description: str | None) -> Marker:
    """The marker in a guest's config values (as Proxmox returns them)."""
    tag_list = split_tags(tags)
    shorts = frozenset(m.group(1) for t in tag_list if (m := _SHORT.fullmatch(t)))
    ids = frozenset(
        m.group(1).lower() for line in (description or "").splitlines() if (m := _LINE.fullmatch(line.strip()))
    )
    return Marker(tagged=MARKER_TAG in tag_list, container_ids=ids, short_ids=shorts)


def ownership(marker: Marker, container_id: UUID) -> Ownership:
    """`ours` when the marker names this container and nothing in it names another; `other` when it names another
    container (also when it names this one too: a copied or edited marker proves nothing); `absent` without one."""
    if not marker.names_anything:
        return "absent"
    if marker.container_ids - {str(container_id)} or marker.short_ids - {container_id.hex[-12:]}:
        return "other"
    return "ours"
