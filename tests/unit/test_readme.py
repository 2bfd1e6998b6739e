"""The README documents every setting the code reads, and the commands it promises exist."""

import re
from pathlib import Path

from infrahaus.cli import VERBS
from infrahaus_domain.nodes.privileges import ROLE_PATHS, ROLE_PRIVILEGES
from infrahaus_domain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Read by the prometheus client library itself, not through the settings.
OUTSIDE_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR"}


def _settings_table() -> set[str]:
    section = re.search(r"<!-- settings:start -->(.*?)<!-- settings:end -->", README, re.DOTALL)
    assert section, "README has no settings table"
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section.group(1), re.MULTILINE))


def test_every_setting_is_documented() -> None:
    missing = set(Settings.variables()) - _settings_table()
    assert not missing, f"add to the README's configuration reference: {sorted(missing)}"


def test_documented_settings_exist() -> None:
    stale = _settings_table() - set(Settings.variables()) - OUTSIDE_SETTINGS
    assert not stale, f"the README documents settings the code no longer reads: {sorted(stale)}"


def test_the_code_reads_its_variables_through_the_settings_only() -> None:
    # Any INFRAHAUS_* name quoted in product code is one the settings declare (set for child processes, named
    # in an error): a variable read somewhere else would escape the README's reference and validation.
    quoted: set[str] = set()
    for package in ("libs", "services"):
        for path in (ROOT / package).rglob("*.py"):
            if "infrahaus_pvesim" not in path.parts:
                quoted.update(re.findall(r"[\"'](INFRAHAUS_[A-Z0-9_]+)[\"']", path.read_text()))
    assert quoted <= set(Settings.variables()), sorted(quoted - set(Settings.variables()))


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


def test_ci_runs_the_readmes_test_command() -> None:
    section = README.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make [a-z-]+)\b", section, re.MULTILINE)
    assert len(commands) == 2, commands  # the demo and the tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{commands[1]}$", ci, re.MULTILINE), f".ci/run does not run {commands[1]!r}"


def test_the_minimal_role_is_what_infrahaus_checks_for() -> None:
    role = re.search(r'pveum role add InfrahausProvisioner -privs "([^"]+)"', README)
    assert role, "README lost the `pveum role add` command"
    assert sorted(role.group(1).split()) == sorted(ROLE_PRIVILEGES)
    paths = re.search(r"for path in ([^;]+); do\n(.*?)\ndone", README, re.DOTALL)
    assert paths, "README lost the `pveum acl modify` loop"
    assert tuple(paths.group(1).split()) == ROLE_PATHS
    assert "-tokens 'infrahaus@pve!provisioner' -roles InfrahausProvisioner" in paths.group(2)
    assert "-users infrahaus@pve -roles InfrahausProvisioner" in paths.group(2)
