"""Fixtures borrowed from other suites: the container tests' app (StubBroker), database sessions and log buffer for
the lifecycle endpoints, and an empty PostgreSQL database of its own for the migration test."""

from tests.integration.containers.conftest import app, db, logbuffer, ports, stub_broker
from tests.integration.domain.test_migrations import fresh_pg_url

__all__ = ["app", "db", "fresh_pg_url", "logbuffer", "ports", "stub_broker"]
