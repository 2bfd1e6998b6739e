"""Stateful fuzzing: sequences of calls chained by the links schemathesis infers (create -> read/act/delete ...).

Same checks as test_schema.py. `FUZZ_STATEFUL_EXAMPLES` scenarios (default 6 in CI; `make fuzz` raises it).
A 502 problem with a `node_*` code is accepted here: a sequence may repoint a node it created (or the seeded one)
at a host that is not a Proxmox node, and "your node failed" is then the documented answer, not a crash of ours.
"""

import os
from typing import Any

import hypothesis
import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.conftest import OPENAPI_PATH, FuzzTarget

SCENARIOS = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "6"))
SEED = int(os.environ.get("FUZZ_SEED", "20261122"))

schema = schemathesis.openapi.from_path(
    OPENAPI_PATH,
    config=SchemathesisConfig.from_dict({"seed": SEED, "generation": {"deterministic": True, "database": "none"}}),
).exclude(
    # A live progress stream never ends (test_schema.py opens it without waiting); logout: see test_schema.py.
    operation_id=["streamContainerProgress", "logout"],
)


def _node_failure(response: Response) -> bool:
    if response.status_code != 502:
        return False
    code = response.json().get("code", "")
    return isinstance(code, str) and code.startswith("node_")


def test_stateful_sequences(fuzz_target: FuzzTarget) -> None:
    calls: list[str] = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            calls.append(case.operation.label)
            if isinstance(case.body, dict) and isinstance(case.body.get("host"), str):
                case.body["host"] = "127.0.0.1"  # never send generated host names off the machine
            return {
                "base_url": fuzz_target.base_url,
                "headers": {"Authorization": f"Bearer {fuzz_target.token}"},
                "timeout": 30,
            }

        def validate_response(
            self, response: Response, case: Case[Any], additional_checks: Any = None, **kwargs: Any
        ) -> None:
            checks = [status_code_conformance, content_type_conformance, response_headers_conformance]
            checks.append(response_schema_conformance)
            if not _node_failure(response):
                checks.append(not_a_server_error)
            case.validate_response(response, checks=checks, headers=kwargs.get("headers"))

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=SCENARIOS,
            stateful_step_count=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
    )
    # Sequences really ran, and chained more than one kind of call.
    assert len(calls) >= SCENARIOS
    assert len(set(calls)) > 1, calls
