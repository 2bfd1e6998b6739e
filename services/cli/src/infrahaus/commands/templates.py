"""`infrahaus templates discover [--dir DIR] [--json]`: sync a templates directory into the database."""

import argparse
import asyncio
import os
from pathlib import Path

import msgspec

from infrahaus_domain.db import create_engine
from infrahaus_domain.errors import DomainError
from infrahaus_domain.settings import Settings
from infrahaus_domain.templates.discovery import discover_into
from infrahaus_domain.templates.schemas import DiscoveryReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    discover = sub.add_parser(
        "discover",
        help="create, update or remove filesystem templates to match the directory",
        description="Sync a templates directory into the database. Exit status 1 when a template could not be read.",
    )
    discover.add_argument("--dir", type=Path, help="templates directory (default: INFRAHAUS_TEMPLATES_DIR)")
    discover.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    root = args.dir or settings.templates_dir
    try:
        report = asyncio.run(_discover(settings.database.url, root))
    except DomainError as exc:
        print(f"error: {exc.detail}")  # noqa: T201
        return 2
    if args.json:
        print(msgspec.json.encode(report).decode())  # noqa: T201
    else:
        _print_report(report)
    return 1 if report.errors else 0


async def _discover(url: str, root: Path | None) -> DiscoveryReport:
    engine = create_engine(url)
    try:
        return await discover_into(engine, root)
    finally:
        await engine.dispose()


def _print_report(report: DiscoveryReport) -> None:
    for label, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("removed", report.removed),
    ):
        print(f"{label:>9}: {', '.join(names) if names else '-'}")  # noqa: T201
    for error in report.errors:
        print(f"    error: {error.template}: {error.error}")  # noqa: T201
