"""Template API tests need no Proxmox: bearer-token users, and a templates directory of their own."""

import shutil
from pathlib import Path

import msgspec
import pytest

from infrahaus_domain.settings import AuthServer, Settings

REPO_TEMPLATES = Path(__file__).resolve().parents[3] / "templates"


@pytest.fixture
def auth_servers() -> tuple[AuthServer, ...]:
    # Bearer tokens are issued straight through the services: no login, so no simulator is started.
    return (AuthServer(name="pve", url="https://127.0.0.1:9"),)


@pytest.fixture
def templates_root(tmp_path: Path) -> Path:
    """A copy of the repository's example templates that a test may change."""
    root = tmp_path / "templates"
    shutil.copytree(REPO_TEMPLATES, root)
    return root


@pytest.fixture
def settings(settings: Settings, templates_root: Path) -> Settings:
    return msgspec.structs.replace(settings, templates_dir=templates_root)
