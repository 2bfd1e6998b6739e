"""Shared fixtures live in plugin modules under tests/fixtures, one per concern."""

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.dev",
    "tests.fixtures.api",
    "tests.fixtures.simulator",
    "tests.fixtures.proxmox_client",
    "tests.fixtures.nodes",
    "tests.fixtures.pct",
    "tests.fixtures.private_services",
    "tests.fixtures.webhook_receiver",
]

# Suites that start whole product processes (or a browser): under pytest-xdist with `--dist loadgroup` each runs on
# one worker, in order, so its module-scoped servers start once and at most two heavy suites run at a time.
_PROCESS_SUITES = frozenset({"e2e", "faults", "fuzz", "sdk", "clients"})
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        suite = item.path.relative_to(_TESTS).parts[0]
        if suite in _PROCESS_SUITES:
            item.add_marker(pytest.mark.xdist_group(suite))
