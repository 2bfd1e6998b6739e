"""Alembic environment: always run with a connection handed in by `infrahaus_domain.migrations`."""

from alembic import context

from infrahaus_domain.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `infrahaus migrate` (infrahaus_domain.migrations), not bare alembic.")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: batch mode recreates tables; PostgreSQL runs plain ALTERs.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
