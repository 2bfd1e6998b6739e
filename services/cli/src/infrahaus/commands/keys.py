"""`infrahaus keys generate|rotate`: make a new encryption key line; re-encrypt stored secrets under the active key.

Rotation: put the new key first in INFRAHAUS_ENCRYPTION_KEYS (keep the old ones after it), restart, run
`infrahaus keys rotate`; once it reports success the old keys can be removed.
"""

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime

from infrahaus_domain import models  # noqa: F401 - imports every model, registering its encrypted columns
from infrahaus_domain.crypto import SecretBox, format_key, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.errors import SettingsError
from infrahaus_domain.keys import rotate_secrets
from infrahaus_domain.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    generate = sub.add_parser("generate", help="print a new key line `kid:base64key`")
    generate.add_argument("--kid", help="key id (default: k<UTC timestamp>)")
    sub.add_parser("rotate", help="re-encrypt every stored secret under the first (active) key")


def run(args: argparse.Namespace) -> int:
    if args.keys_action == "generate":
        kid = args.kid or datetime.now(UTC).strftime("k%Y%m%d%H%M%S")
        print(format_key(generate_key(kid)))  # noqa: T201
        return 0
    try:
        settings = Settings.from_env(os.environ)
        SecretBox(settings.encryption.keys)
    except SettingsError as exc:
        print(f"infrahaus keys rotate: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return asyncio.run(rotate(settings))


async def rotate(settings: Settings) -> int:
    """Re-encrypt all registered secret columns in one transaction and print what changed."""
    box = SecretBox(settings.encryption.keys)
    engine = create_engine(settings.database.url)
    try:
        async with engine.begin() as conn:
            report = await rotate_secrets(conn, box)
    finally:
        await engine.dispose()
    for column, count in report.rotated.items():
        print(f"{column}: {count} re-encrypted")  # noqa: T201
    print(f"active key {box.active_kid}; {report.unchanged} already current")  # noqa: T201
    return 0
