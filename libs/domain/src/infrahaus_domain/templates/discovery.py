"""Sync the templates directory (`INFRAHAUS_TEMPLATES_DIR`) into the database.

Each subdirectory holding a `template.conf` is one filesystem template, keyed by its directory name. Template
directories are untrusted input: symbolic links are refused, never followed, and sizes and counts are bounded
(`infrahaus_domain.templates.parser`); a refused template is reported with the reason, the others still sync.
A template whose content hash is unchanged is not touched, so re-running on the same tree writes nothing.
A broken template is reported and keeps its last good version in the database; the others still sync.
A directory that disappeared removes its template (containers keep the snapshot they were created with).
"""

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from infrahaus_domain import allowlist as v
from infrahaus_domain.db import alchemy_config
from infrahaus_domain.errors import ConflictError, DomainError, ValidationFailed
from infrahaus_domain.templates.parser import (
    MAX_TEMPLATES,
    ParsedTemplate,
    TemplateFormatError,
    parse_template_dir,
    template_dirs,
)
from infrahaus_domain.templates.schemas import DiscoveryError, DiscoveryReport
from infrahaus_domain.templates.service import TemplateService, validate_template


class TemplatesDirUnavailable(ConflictError):  # noqa: N818 - reads as the condition, like the other domain errors
    code = "templates_dir_unavailable"


def scan(root: Path) -> list[ParsedTemplate | DiscoveryError]:
    """Parse every template directory under `root` (blocking file I/O: run it in a thread)."""
    if not root.is_dir():
        # Never treat a missing (e.g. unmounted) directory as "every template was deleted".
        raise TemplatesDirUnavailable(f"The templates directory {str(root)!r} does not exist.")
    results: list[ParsedTemplate | DiscoveryError] = []
    for index, path in enumerate(template_dirs(root)):
        if index >= MAX_TEMPLATES:
            results.append(DiscoveryError(template=path.name, error=f"more than {MAX_TEMPLATES} templates"))
            continue
        try:
            v.validate_label(path.name, "template directory name")
            results.append(parse_template_dir(path))
        except (TemplateFormatError, v.UnsafeValueError) as exc:
            results.append(DiscoveryError(template=path.name, error=str(exc)))
    return results


def _describe(exc: DomainError) -> str:
    if isinstance(exc, ValidationFailed):
        return "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
    return exc.detail


async def discover(service: TemplateService, root: Path | None) -> DiscoveryReport:
    """Create, update or remove filesystem templates so the database matches `root`."""
    if root is None:
        raise TemplatesDirUnavailable("No templates directory is configured (INFRAHAUS_TEMPLATES_DIR).")
    scanned = await asyncio.to_thread(scan, root)
    existing = await service.filesystem_templates()
    report = DiscoveryReport(created=[], updated=[], unchanged=[], removed=[], errors=[])
    seen: set[str] = set()
    for item in scanned:
        if isinstance(item, DiscoveryError):
            seen.add(item.template)
            report.errors.append(item)
            continue
        seen.add(item.source_dir)
        current = existing.get(item.source_dir)
        if current is not None and current.content_hash == item.content_hash:
            report.unchanged.append(item.source_dir)
            continue
        try:
            data = validate_template(item.template)
            await service.store_filesystem(current, item.source_dir, data, item.content_hash)
        except (ValidationFailed, ConflictError) as exc:
            report.errors.append(DiscoveryError(template=item.source_dir, error=_describe(exc)))
            continue
        (report.created if current is None else report.updated).append(item.source_dir)
    for source_dir, template in sorted(existing.items()):
        if source_dir not in seen:
            await service.remove_filesystem(template)
            report.removed.append(source_dir)
    return report


async def discover_into(engine: AsyncEngine, root: Path | None) -> DiscoveryReport:
    """Run `discover` in a transaction of its own (CLI, embedded start-up); commits what it synced."""
    async with alchemy_config(engine).get_session() as session:
        report = await discover(TemplateService(session=session), root)
        await session.commit()
        return report
