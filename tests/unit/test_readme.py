"""The README documents every setting the code reads, and the commands it promises exist."""

import re
from pathlib import Path

from infrahaus.cli import VERBS
from infrahaus_worker.pipeline.plan import Limits

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _settings_table() -> set[str]:
    section = re.search(r"<!-- settings:start -->(.*?)<!-- settings:end -->", README, re.DOTALL)
    assert section, "README has no settings table"
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section.group(1), re.MULTILINE))


def _variables_read_by_the_code() -> set[str]:
    found: set[str] = set()
    for package in ("libs", "services", "src"):
        for path in (ROOT / package).rglob("*.py"):
            found.update(re.findall(r"[\"'](INFRAHAUS_[A-Z0-9_]+)[\"']", path.read_text()))
    return found


def _worker_limits() -> set[str]:
    # Read as INFRAHAUS_WORKER_<FIELD> by field name, so they never appear literally in the code.
    return {f"INFRAHAUS_WORKER_{name.upper()}" for name in Limits.__struct_fields__}


def test_every_setting_is_documented() -> None:
    missing = (_variables_read_by_the_code() | _worker_limits()) - _settings_table()
    assert not missing, f"add to the README's configuration reference: {sorted(missing)}"


def test_documented_settings_exist() -> None:
    known = _variables_read_by_the_code() | _worker_limits() | {"PROMETHEUS_MULTIPROC_DIR"}
    stale = _settings_table() - known
    assert not stale, f"the README documents settings the code no longer reads: {sorted(stale)}"


def test_readme_commands_exist() -> None:
    for verb in set(re.findall(r"infrahaus ([a-z]+)", README)) & {
        "dev", "api", "worker", "migrate", "openapi", "keys", "templates", "pvesim"
    }:  # fmt: skip
        assert verb in VERBS
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^make ([a-z-]+)", README, re.MULTILINE)) | set(re.findall(r"`make ([a-z-]+)`", README))
    assert targets
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"Makefile has no target {target!r}"
