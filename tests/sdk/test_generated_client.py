"""A Python SDK generated from openapi/openapi.json with openapi-python-client, used against `infrahaus dev --demo`.

Generation runs in a temporary directory (nothing generated is committed) and must print no warning; the modules
and models must read naturally. The scenario then drives the running product only through the generated client:
login (cookie + CSRF) -> API token -> probe and register the demo node -> create a container from `web-hello` ->
wait for the operation -> services -> delete -> wait.
"""

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.fixtures.dev import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
OPENAPI_PATH = REPO / "openapi" / "openapi.json"
PACKAGE = "infrahaus_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@dataclass
class Sdk:
    """The generated package, importable, and what the generator printed."""

    root: Path
    output: str

    def module(self, name: str) -> Any:
        found: ModuleType = importlib.import_module(f"{PACKAGE}.{name}")
        return found


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sdk]:
    workdir = tmp_path_factory.mktemp("sdk")
    config = workdir / "config.yaml"
    # No post hooks: formatting the generated code is not what is tested (and needs no ruff on PATH).
    config.write_text(f"project_name_override: infrahaus-client\npackage_name_override: {PACKAGE}\npost_hooks: []\n")
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(OPENAPI_PATH), "--config", str(config), "--meta", "none",
         "--output-path", str(workdir / PACKAGE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    sys.path.insert(0, str(workdir))
    try:
        yield Sdk(root=workdir / PACKAGE, output=output)
    finally:
        sys.path.remove(str(workdir))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_generation_prints_no_warning(sdk: Sdk) -> None:
    assert "warning" not in sdk.output.lower(), sdk.output
    assert "skipping" not in sdk.output.lower(), sdk.output


def test_operations_and_models_read_naturally(sdk: Sdk) -> None:
    operations = {p.relative_to(sdk.root / "api").as_posix() for p in (sdk.root / "api").rglob("*.py")}
    operations = {p for p in operations if not p.endswith("__init__.py")}
    expected = {
        "auth/login.py", "auth/create_api_token.py", "auth/get_current_user.py",
        "nodes/list_nodes.py", "nodes/create_node.py", "nodes/probe_node.py",
        "templates/list_templates.py",
        "containers/create_container.py", "containers/list_containers.py", "containers/delete_container.py",
        "containers/start_container.py", "containers/list_container_services.py",
        "operations/get_operation.py",
        "vmids/check_node_vmid.py",
    }  # fmt: skip
    assert expected <= operations, sorted(expected - operations)
    # One module per operation, named after its operationId under its tag; nothing derived from paths or methods.
    assert operations == _modules_from_operation_ids()
    assert not [p for p in operations if re.search(r"_(get|post|put|patch|delete)$|_api_(containers|nodes)", p)]
    models = {p.stem for p in (sdk.root / "models").glob("*.py")} - {"__init__"}
    assert {"container_create", "container_created", "node_create", "node_probe", "operation_read",
            "login_request", "api_token_create", "problem_detail", "service_list"} <= models  # fmt: skip
    assert not [m for m in models if "_api_" in m or m.startswith(("body_", "response_"))]
    # Optional enums are one named class each (e.g. `ListContainersLifecycle`), not `..._type_1`, `..._type_2_type_1`.
    assert {"list_containers_lifecycle", "list_operations_status", "vmid_availability_reason"} <= models
    assert not [m for m in models if re.search(r"_type_[1-9]", m)]


def _modules_from_operation_ids() -> set[str]:
    document = json.loads(OPENAPI_PATH.read_text())
    methods = {"get", "post", "put", "patch", "delete"}

    def snake(name: str) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).replace("-", "_").lower()

    return {
        f"{snake(operation['tags'][0])}/{snake(operation['operationId'])}.py"
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in methods
    }


# ------------------------------------------------------------------ the scenario against the running product


@dataclass
class Demo:
    base_url: str
    sim_api_port: int
    sim_ssh_port: int
    log: Path


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """`infrahaus dev --demo` on free ports (SQLite, in-process worker, simulator), stopped with SIGINT."""
    port, sim_api_port, sim_ssh_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAHAUS_")}
    log_path = tmp_path / "dev.log"
    with log_path.open("w") as log:  # a file, not a pipe: an unread pipe would block the server
        process = subprocess.Popen(
            [sys.executable, "-m", "infrahaus.cli", "dev", "--demo", "--port", str(port),
             "--data-dir", str(tmp_path / "data"), "--sim-api-port", str(sim_api_port),
             "--sim-ssh-port", str(sim_ssh_port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(lambda: _ready(base_url, process, log_path), timeout=150, what="infrahaus dev to be ready")
            yield Demo(base_url, sim_api_port, sim_ssh_port, log_path)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(base_url: str, process: "subprocess.Popen[bytes]", log: Path) -> bool:
    assert process.poll() is None, f"infrahaus dev exited: {log.read_text()}"
    try:
        return httpx.get(f"{base_url}/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_scenario_with_the_generated_client(sdk: Sdk, demo: Demo) -> None:
    client_module = sdk.module("client")
    models = sdk.module("models")
    login = sdk.module("api.auth.login")
    create_api_token = sdk.module("api.auth.create_api_token")
    get_current_user = sdk.module("api.auth.get_current_user")
    probe_node = sdk.module("api.nodes.probe_node")
    create_node = sdk.module("api.nodes.create_node")
    list_nodes = sdk.module("api.nodes.list_nodes")
    list_templates = sdk.module("api.templates.list_templates")
    create_container = sdk.module("api.containers.create_container")
    list_containers = sdk.module("api.containers.list_containers")
    list_container_services = sdk.module("api.containers.list_container_services")
    delete_container = sdk.module("api.containers.delete_container")
    get_operation = sdk.module("api.operations.get_operation")

    # Clients may be generated from the live server too: it serves exactly the committed document.
    served = httpx.get(f"{demo.base_url}/api/schema/openapi.json", timeout=30)
    assert served.json() == json.loads(OPENAPI_PATH.read_text())

    # Login with the session cookie (kept by the client's httpx client) and the CSRF header for writes.
    with client_module.Client(base_url=demo.base_url, raise_on_unexpected_status=True) as anonymous:
        session = login.sync(client=anonymous, body=models.LoginRequest(username="root@pam", password="demo"))
        assert isinstance(session, models.SessionInfo), session
        anonymous.get_httpx_client().headers["X-CSRF-Token"] = session.csrf_token
        created_token = create_api_token.sync(client=anonymous, body=models.ApiTokenCreate(name="sdk"))
        assert isinstance(created_token, models.ApiTokenCreated), created_token

    with client_module.AuthenticatedClient(
        base_url=demo.base_url, token=created_token.token, raise_on_unexpected_status=True, timeout=httpx.Timeout(30)
    ) as api:
        me = get_current_user.sync(client=api)
        assert me.user.userid == "root@pam"

        certificate = probe_node.sync(client=api, body=models.NodeProbe(host="127.0.0.1", port=demo.sim_api_port))
        assert isinstance(certificate, models.CertificateRead), certificate
        node = create_node.sync(
            client=api,
            body=models.NodeCreate(
                name="demo",
                host="127.0.0.1",
                port=demo.sim_api_port,
                token_id="root@pam!infrahaus",
                token_secret="demo-token-secret",
                tls_fingerprint=certificate.fingerprint_sha256,
                ssh_port=demo.sim_ssh_port,
                ssh_username="root",
                ssh_password="demo",
            ),
        )
        assert isinstance(node, models.NodeRead), node
        assert [n.id for n in list_nodes.sync(client=api).items] == [node.id]

        templates = list_templates.sync(client=api).items
        web_hello = next(t for t in templates if t.name == "web-hello")
        created = create_container.sync(
            client=api, body=models.ContainerCreate(template_id=web_hello.id, hostname="sdk-web")
        )
        assert isinstance(created, models.ContainerCreated), created
        container_id = created.container.id
        _wait_succeeded(get_operation, api, created.operation.id, demo)

        services = list_container_services.sync(client=api, container_id=container_id)
        assert "web" in [s.name for s in services.services], services
        listed = list_containers.sync(client=api)
        assert [c.id for c in listed.items] == [container_id]

        deleting = delete_container.sync(client=api, container_id=container_id)
        assert isinstance(deleting, models.OperationRead), deleting
        _wait_succeeded(get_operation, api, deleting.id, demo)
        assert list_containers.sync(client=api).items == []


def _wait_succeeded(get_operation: Any, api: Any, operation_id: Any, demo: Demo) -> None:
    terminal = {"succeeded", "failed", "cancelled"}
    state: dict[str, Any] = {}

    def finished() -> bool:
        state["operation"] = get_operation.sync(client=api, operation_id=operation_id)
        return str(state["operation"].status) in terminal

    _wait_for(finished, timeout=120, what=f"operation {operation_id}")
    operation = state["operation"]
    assert str(operation.status) == "succeeded", (operation.to_dict(), demo.log.read_text()[-3000:])
