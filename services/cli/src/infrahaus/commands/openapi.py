"""`infrahaus openapi [--output openapi/openapi.json] [--check]`: write (or verify) the OpenAPI document."""

import argparse
import sys
from pathlib import Path

from infrahaus_api.app import create_app
from infrahaus_api.openapi import schema_json
from infrahaus_domain.crypto import generate_key
from infrahaus_domain.settings import DatabaseSettings, EncryptionSettings, Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=Path("openapi/openapi.json"), help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs instead of writing it")


def current_schema() -> str:
    """The document as the app serves it; settings do not change it, so throwaway ones are used."""
    settings = Settings(
        database=DatabaseSettings(url="sqlite+aiosqlite:///:memory:"),
        encryption=EncryptionSettings(keys=(generate_key("schema"),)),
    )
    return schema_json(create_app(settings))


def run(args: argparse.Namespace) -> int:
    text = current_schema()
    output: Path = args.output
    if args.check:
        if not output.exists() or output.read_text() != text:
            print(f"{output} is out of date: run `make openapi`", file=sys.stderr)  # noqa: T201
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")  # noqa: T201
    return 0
