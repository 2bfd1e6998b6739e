"""`infrahaus migrate [upgrade [REV] | downgrade REV | current]`: apply or revert database migrations."""

import argparse
import asyncio
import os
import sys

from infrahaus_domain import migrations
from infrahaus_domain.db import create_engine
from infrahaus_domain.errors import SettingsError
from infrahaus_domain.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", default="upgrade", choices=["upgrade", "downgrade", "current"], help="default: upgrade"
    )
    parser.add_argument("revision", nargs="?", help="target revision (upgrade: default head; downgrade: required)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"infrahaus migrate: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.action == "downgrade" and not args.revision:
        print("downgrade needs a target revision (e.g. 0001_users, or base to remove everything)")  # noqa: T201
        return 2
    return asyncio.run(_run(settings.database.url, args.action, args.revision))


async def _run(url: str, action: str, revision: str | None) -> int:
    engine = create_engine(url)
    try:
        if action == "upgrade":
            await migrations.upgrade(engine, revision or "head")
        elif action == "downgrade":
            await migrations.downgrade(engine, revision or "base")
        print(f"database at revision: {await migrations.current(engine) or '(none)'}")  # noqa: T201
    finally:
        await engine.dispose()
    return 0
