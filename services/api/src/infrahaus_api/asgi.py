"""ASGI entry for production servers: settings from the environment, logging configured, the app built once."""

import os

from litestar import Litestar

from infrahaus_api.app import create_app
from infrahaus_domain.logs import configure_logging
from infrahaus_domain.settings import Settings


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory`: every server process builds its own app (and its own connections)."""
    settings = Settings.from_env(os.environ)
    configure_logging(settings.logging.level, settings.logging.format)
    return create_app(settings)
