"""Generated SDKs read naturally and generate without warnings from the committed OpenAPI document."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.api.test_openapi import COMMITTED

# One worker runs the whole module, so its module-scoped fixture is built once under pytest-xdist.
pytestmark = pytest.mark.xdist_group("api_sdk")


@pytest.fixture(scope="module")
def generated_sdk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sdk") / "infrahaus_client"
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        [
            os.path.join(bin_dir, "openapi-python-client"),
            "generate", "--path", str(COMMITTED), "--meta", "none", "--output-path", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout + result.stderr


def test_generation_is_warning_free(generated_sdk: tuple[Path, str]) -> None:
    _, output = generated_sdk
    assert "Warning" not in output, output


def test_operations_have_readable_names(generated_sdk: tuple[Path, str]) -> None:
    out, _ = generated_sdk
    auth = {p.stem for p in (out / "api" / "auth").glob("*.py")}
    assert {"login", "logout", "get_current_user", "create_api_token", "list_api_tokens", "revoke_api_token"} <= auth
    assert (out / "models" / "problem_detail.py").exists()
