"""Every problem `code` the code base can answer is in the documented enum (`ProblemCode`).

Generated SDKs turn the enum into a closed type: a code missing from it would make them fail to read the answer.
"""

import importlib
import pkgutil
import re
from pathlib import Path
from typing import get_args

import infrahaus_api
import infrahaus_domain
from infrahaus_api.errors import HTTP_CODES, PROBLEM_CODES
from infrahaus_domain.errors import DomainError, FieldErrorCode
from infrahaus_domain.proxmox_errors import FailureCode

ROOT = Path(__file__).resolve().parents[3]
# A code given by name in the source: `code = "x"` (a class), `code="x"` (an argument), `problem_response(409, "x"`.
LITERAL = re.compile(r"""\bcode\s*=\s*"(?P<a>[a-z_]+)"|problem_response\(\s*\d+,\s*"(?P<b>[a-z_]+)\"""")


def _all_subclasses(cls: type[DomainError]) -> list[type[DomainError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


def test_every_domain_error_and_http_code_is_documented() -> None:
    for package in (infrahaus_domain, infrahaus_api):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".migrations" not in module.name:
                importlib.import_module(module.name)
    codes = {getattr(cls, "code", None) for cls in _all_subclasses(DomainError)}
    assert codes - PROBLEM_CODES == set()
    assert set(HTTP_CODES.values()) - PROBLEM_CODES == set()


def test_every_code_written_in_the_source_is_known() -> None:
    known = PROBLEM_CODES | set(get_args(FieldErrorCode)) | set(get_args(FailureCode))
    unknown: list[str] = []
    for directory in ("libs/domain/src", "services/api/src", "services/worker/src"):
        for path in (ROOT / directory).rglob("*.py"):
            for match in LITERAL.finditer(path.read_text()):
                code = match.group("a") or match.group("b")
                if code not in known:
                    unknown.append(f"{path.relative_to(ROOT)}: {code}")
    assert unknown == []
