"""Fixtures borrowed from other suites: the container tests' Redis ports and log buffer for the lifecycle endpoints,
and an empty PostgreSQL database of its own for the migration test."""

from tests.integration.containers.conftest import logbuffer, ports
from tests.integration.domain.test_migrations import fresh_pg_url

__all__ = ["fresh_pg_url", "logbuffer", "ports"]
