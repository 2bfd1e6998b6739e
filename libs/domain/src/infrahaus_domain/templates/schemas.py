"""Templates: request and response bodies."""

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from infrahaus_domain.allowlist import FilePolicy, PackageManager
from infrahaus_domain.models.templates import RevisionAuthor, TemplateSource

Cores = Annotated[int, msgspec.Meta(ge=1, le=512)]
MemoryMb = Annotated[int, msgspec.Meta(ge=16, le=4 * 1024 * 1024)]
SwapMb = Annotated[int, msgspec.Meta(ge=0, le=4 * 1024 * 1024)]
DiskGb = Annotated[int, msgspec.Meta(ge=1, le=128 * 1024)]
Position = Annotated[int, msgspec.Meta(ge=0, le=100_000)]


class TemplateScriptIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A setup script; scripts run in ascending `position`, then in list order."""

    name: str
    content: str
    position: Position | None = None
    description: str = ""
    enabled: bool = True


class TemplateFileIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A file written into `target_path` (a directory) under `policy`."""

    name: str
    target_path: str
    content: str
    policy: FilePolicy = "default"
    mode: str = "0644"


class TemplatePackageIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A package; `bucket` is a free group label (the package file's name for discovered templates)."""

    name: str
    manager: PackageManager
    version: str | None = None
    bucket: str | None = None


class TemplateWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of POST /api/templates and PUT /api/templates/{id} (PUT replaces everything, children included)."""

    name: str
    description: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    os_template: str | None = None
    cores: Cores = 1
    memory_mb: MemoryMb = 512
    swap_mb: SwapMb = 512
    disk_gb: DiskGb = 8
    storage: str = "local-lvm"
    bridge: str = "vmbr0"
    unprivileged: bool = True
    nesting: bool = False
    keyctl: bool = False
    fuse: bool = False
    scripts: list[TemplateScriptIn] = msgspec.field(default_factory=list)
    files: list[TemplateFileIn] = msgspec.field(default_factory=list)
    packages: list[TemplatePackageIn] = msgspec.field(default_factory=list)


class TemplateScriptRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    position: int
    content: str
    description: str
    enabled: bool


class TemplateFileRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    target_path: str
    policy: FilePolicy
    mode: str
    content: str


class TemplatePackageRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    manager: PackageManager
    version: str | None
    bucket: str | None


class TemplateSummary(msgspec.Struct, kw_only=True):
    """A list item: the template without its children's contents."""

    id: uuid.UUID
    name: str
    description: str
    tags: list[str]
    os_template: str | None
    cores: int
    memory_mb: int
    swap_mb: int
    disk_gb: int
    storage: str
    bridge: str
    unprivileged: bool
    nesting: bool
    keyctl: bool
    fuse: bool
    source: TemplateSource
    owner_id: uuid.UUID | None
    script_count: int
    file_count: int
    package_count: int
    revision: Annotated[
        int, msgspec.Meta(description="Number of the newest revision (`GET /api/templates/{id}/revisions`).")
    ]
    created_at: datetime
    updated_at: datetime


class TemplateRead(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str
    tags: list[str]
    os_template: str | None
    cores: int
    memory_mb: int
    swap_mb: int
    disk_gb: int
    storage: str
    bridge: str
    unprivileged: bool
    nesting: bool
    keyctl: bool
    fuse: bool
    source: TemplateSource
    owner_id: uuid.UUID | None
    scripts: list[TemplateScriptRead]
    files: list[TemplateFileRead]
    packages: list[TemplatePackageRead]
    revision: Annotated[
        int, msgspec.Meta(description="Number of the newest revision (`GET /api/templates/{id}/revisions`).")
    ]
    created_at: datetime
    updated_at: datetime


class TemplatePage(msgspec.Struct, kw_only=True):
    items: list[TemplateSummary]
    next_cursor: str | None


class BucketCopy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of POST /api/templates/{id}/packages/from-bucket."""

    bucket_id: uuid.UUID


class DiscoveryError(msgspec.Struct, kw_only=True):
    template: str
    error: str


class DiscoveryReport(msgspec.Struct, kw_only=True):
    """Outcome of syncing the templates directory: template directory names per outcome.

    `removed` lists filesystem templates whose directory disappeared; they are deleted
    (containers keep the snapshot they were created with).
    """

    created: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]
    errors: list[DiscoveryError]


# ---------------------------------------------------------------- revisions


class RevisionScript(msgspec.Struct, kw_only=True):
    id: uuid.UUID | None = None
    name: str
    position: int
    content: str
    description: str = ""
    enabled: bool = True
    digest: str


class RevisionFile(msgspec.Struct, kw_only=True):
    name: str
    target_path: str
    policy: FilePolicy
    mode: str
    content: str
    digest: str


class RevisionPackage(msgspec.Struct, kw_only=True):
    name: str
    manager: PackageManager
    version: str | None = None
    bucket: str | None = None


class TemplateContent(msgspec.Struct, kw_only=True):
    """Everything a template says, as one immutable document (a revision's `content`)."""

    name: str
    description: str
    tags: list[str]
    os_template: str | None
    cores: int
    memory_mb: int
    swap_mb: int
    disk_gb: int
    storage: str
    bridge: str
    unprivileged: bool
    nesting: bool
    keyctl: bool
    fuse: bool
    scripts: list[RevisionScript]
    files: list[RevisionFile]
    packages: list[RevisionPackage]


class RevisionAuthorRead(msgspec.Struct, kw_only=True):
    """Who or what made a revision: a user's API save (`user_id`), a directory `discovery` run, or the `migration`
    that recorded the state templates had when revisions were introduced."""

    kind: RevisionAuthor
    user_id: uuid.UUID | None = None


class RevisionSummary(msgspec.Struct, kw_only=True):
    number: int
    digest: str
    author: RevisionAuthorRead
    created_at: datetime
    containers: int


class RevisionRead(msgspec.Struct, kw_only=True):
    template_id: uuid.UUID | None
    number: int
    digest: str
    author: RevisionAuthorRead
    created_at: datetime
    containers: int
    content: TemplateContent


class RevisionPage(msgspec.Struct, kw_only=True):
    items: list[RevisionSummary]
    next_cursor: str | None
