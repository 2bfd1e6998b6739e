"""The `infrahaus` command line: one verb per module under `infrahaus.commands`."""

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from infrahaus.commands import SIMULATOR_MISSING, simulator_available

# verb -> (module, one-line help). Each module defines `add_arguments(parser)` and `run(args) -> int`.
VERBS: dict[str, tuple[str, str]] = {
    "dev": (
        "infrahaus.commands.dev",
        "run the embedded default: API, SQLite, in-memory stores (--demo: with simulator)",
    ),
    "api": ("infrahaus.commands.api", "run the production API server (several processes; PostgreSQL and Redis)"),
    "migrate": ("infrahaus.commands.migrate", "apply (or revert, or show) database migrations"),
    "keys": ("infrahaus.commands.keys", "generate an encryption key; re-encrypt stored secrets under the active key"),
    "openapi": ("infrahaus.commands.openapi", "write the OpenAPI document to openapi/openapi.json"),
    "worker": ("infrahaus.commands.worker", "run the production worker processes (dramatiq over Redis)"),
    "templates": ("infrahaus.commands.templates", "sync a templates directory into the database (discover)"),
    # The simulator's own package, imported only when present (development installs; docs/adr/0009).
    "pvesim": ("infrahaus_pvesim.command", "run the Proxmox VE simulator (HTTPS API + SSH host) on its own"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full command line, or with `only` one verb's: verb modules import heavy stacks (the API, the worker,
    the simulator), and a process needs just its own."""
    parser = argparse.ArgumentParser(
        prog="infrahaus",
        description="infrahaus: a self-hosted, headless control plane for LXC containers on Proxmox VE.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        if only is not None and verb != only:
            continue
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        if module_name.startswith("infrahaus_pvesim") and not simulator_available():
            verb_parser.set_defaults(_run=_simulator_missing(verb), _any_arguments=True)
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=module.run)
    return parser


def _simulator_missing(verb: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"infrahaus {verb}: {SIMULATOR_MISSING}", file=sys.stderr)  # noqa: T201 - CLI error output
        return 2

    return run


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=words[0] if words and words[0] in VERBS else None)
    args, unknown = parser.parse_known_args(words)
    if unknown and not getattr(args, "_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.verb is None:
        parser.print_help()
        return 2
    result: int = args._run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
