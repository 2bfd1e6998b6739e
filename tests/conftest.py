"""Shared fixtures live in plugin modules under tests/fixtures, one per concern."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.dev",
    "tests.fixtures.api",
    "tests.fixtures.simulator",
    "tests.fixtures.proxmox_client",
    "tests.fixtures.nodes",
    "tests.fixtures.pct",
    "tests.fixtures.private_services",
]
