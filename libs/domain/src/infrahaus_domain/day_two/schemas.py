"""Day two: the shapes of sync, snapshot and drift requests and answers, and of a container's settings."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from infrahaus_domain.allowlist import whole

SyncStep = Literal["config", "files", "packages", "scripts"]
SYNC_STEPS: tuple[SyncStep, ...] = ("config", "files", "packages", "scripts")
# What a sync after a start made through infrahaus runs (scripts only when selected).
ON_START_STEPS: tuple[SyncStep, ...] = ("config", "files", "packages")

SnapshotName = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=40,
        pattern=whole(r"[A-Za-z][A-Za-z0-9_-]+"),
        description="A Proxmox snapshot name: a letter, then letters, digits, `-` or `_` (not `current` or `vzdump`).",
        extra={"message": "Start with a letter; use letters, digits, '-' and '_' only (2 to 40 characters)."},
        examples=["before-upgrade"],
    ),
]
ScriptName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
RevisionNumber = Annotated[
    int, msgspec.Meta(ge=1, le=999_999_999, description="A revision number of the container's template.")
]


class SyncRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /api/containers/{id}/sync` (every field optional)."""

    revision: Annotated[
        RevisionNumber | Literal["latest"],
        msgspec.Meta(description="The template revision to bring the container to (`latest` by default)."),
    ] = "latest"
    steps: Annotated[
        list[SyncStep] | None,
        msgspec.Meta(
            description="What to bring in line, in this order: `config` (cores, memory, swap, features, "
            "bridge), `files` (by their policies), `packages`, `scripts`. All four by default."
        ),
    ] = None
    scripts: Annotated[
        list[ScriptName] | None,
        msgspec.Meta(
            description="Scripts to run again although unchanged. Without it, only scripts that are new or changed "
            "since the container's applied revision run."
        ),
    ] = None
    snapshot: Annotated[
        bool,
        msgspec.Meta(
            description="Take a snapshot first and roll back to it when a step fails (file backups of what the "
            "sync changes where the storage cannot snapshot). The result says which was used."
        ),
    ] = True


class SnapshotCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /api/containers/{id}/snapshots`."""

    name: SnapshotName | None = None
    description: Annotated[str, msgspec.Meta(max_length=1000)] = ""


class RollbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /api/containers/{id}/snapshots/{name}/rollback` (optional)."""

    start: Annotated[
        bool | None,
        msgspec.Meta(
            description="Start the container after the rollback. By default it is started again when it was running "
            "(Proxmox stops a running container hard to roll it back)."
        ),
    ] = None


class SnapshotRead(msgspec.Struct, kw_only=True):
    name: str
    description: str
    created_at: datetime | None
    parent: str | None
    # `prepare` / `delete` while Proxmox works on it (or a task died half-way).
    state: str | None
    # Taken by infrahaus itself before a sync or a creation's scripts (`ih-…`).
    automatic: bool


class SnapshotList(msgspec.Struct, kw_only=True):
    """The container's snapshots, oldest first; `current_parent` is the one the running state descends from, and
    `supported` whether its storage can snapshot at all (Proxmox's `…/feature?feature=snapshot`)."""

    items: list[SnapshotRead]
    current_parent: str | None
    supported: bool


class ContainerSettingsUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `PATCH /api/containers/{id}/settings`."""

    sync_on_start: Annotated[
        bool | msgspec.UnsetType,
        msgspec.Meta(
            description="After every start made through infrahaus, run a sync (config, files and packages; no "
            "scripts) recorded as an operation of its own."
        ),
    ] = msgspec.UNSET


class ContainerSettings(msgspec.Struct, kw_only=True):
    sync_on_start: bool


DriftKind = Literal["file", "package", "script", "config"]
DriftState = Literal["same", "changed", "missing", "extra"]


class DriftItem(msgspec.Struct, kw_only=True):
    """One thing compared: a template file (by path), a package (`manager:name`), a script, or a Proxmox config
    value; `same`, `changed`, `missing` (the revision has it, the container not) or `extra` (the container has it,
    the revision no longer)."""

    kind: DriftKind
    name: str
    state: DriftState
    detail: str


class DriftReport(msgspec.Struct, kw_only=True):
    """`GET /api/containers/{id}/drift`: the container compared with a revision of its template."""

    items: list[DriftItem]
    # The revision compared with (null: the container's creation spec, made before revisions existed).
    revision: int | None
    applied_revision: int | None
    in_sync: bool
    computed_at: datetime
    # Served from the short-lived cache (`?refresh=true` computes it again).
    cached: bool
