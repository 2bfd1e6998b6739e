"""TypeScript types generated from the served OpenAPI document compile a small typed client with `tsc --strict`.

The document comes from the app itself (`create_app`, served in-process); `openapi-typescript` turns it into
types with its default options (what a frontend developer gets); `typescript/client.ts` (login and create with
only what has no server default, a conditional GET, both event streams narrowed by `type`, and mistakes the types
must reject) is compiled against them. Any
generator warning or compiler error fails the test. Nothing generated is written into the repository.
"""

import json
from pathlib import Path

import pytest
from litestar.testing import TestClient

from infrahaus_api.app import create_app
from infrahaus_domain.crypto import generate_key
from infrahaus_domain.settings import DatabaseSettings, EncryptionSettings, Settings
from tests.clients.node import CLIENTS, installed, run_node

pytestmark = pytest.mark.e2e

SOURCES = CLIENTS / "typescript"


def served_document() -> str:
    """The OpenAPI document as the app serves it (settings do not change it: throwaway ones)."""
    settings = Settings(
        database=DatabaseSettings(url="sqlite+aiosqlite:///:memory:"),
        encryption=EncryptionSettings(keys=(generate_key("ts"),)),
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/schema/openapi.json")
        assert response.status_code == 200, response.text
        return response.text


def test_generated_types_compile_a_strict_typed_client(tmp_path: Path) -> None:
    node_modules = installed()
    document = tmp_path / "openapi.json"
    document.write_text(served_document())
    assert json.loads(document.read_text())["openapi"].startswith("3.")

    project = tmp_path / "client"
    (project / "generated").mkdir(parents=True)
    (project / "node_modules").symlink_to(node_modules, target_is_directory=True)
    for name in ("client.ts", "tsconfig.json"):
        (project / name).write_text((SOURCES / name).read_text())

    generated = project / "generated" / "api.d.ts"
    generator = run_node(
        [str(node_modules / "openapi-typescript" / "bin" / "cli.js"), str(document), "--output", str(generated)],
        cwd=project,
        timeout=120,
    )
    output = generator.stdout + generator.stderr
    assert generator.returncode == 0, output
    assert "warn" not in output.lower(), output
    types = generated.read_text()
    for operation in ("login", "listTemplates", "createContainer", "getOperation", "streamEvents"):
        assert f"    {operation}: {{" in types, f"{operation} missing from the generated types"
    # The streams' items are typed (not `unknown`), and the documented headers come out as typed members.
    assert '"text/event-stream": components["schemas"]["ContainerProgressItem"];' in types
    assert '"text/event-stream": components["schemas"]["EventRead"];' in types
    assert '"X-Request-ID": components["headers"]["XRequestId"];' in types
    assert '"If-None-Match"?: string;' in types

    compiler = run_node(
        [str(node_modules / "typescript" / "bin" / "tsc"), "-p", "tsconfig.json", "--strict", "--noEmit",
         "--pretty", "false"],
        cwd=project,
        timeout=180,
    )  # fmt: skip
    assert compiler.returncode == 0, f"tsc --strict failed:\n{compiler.stdout}{compiler.stderr}"
