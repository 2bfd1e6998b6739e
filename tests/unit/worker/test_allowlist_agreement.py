"""Whatever the API accepts (202) the worker runs: both sides check names with the one allow-list module.

The API side is what a creation request or a template goes through (`parse_package_spec`, `validate_*`); the
worker side is what its pipeline steps check again before a value reaches a command in the container.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infrahaus_domain import allowlist as v
from infrahaus_domain.containers.schemas import SpecFile, SpecPackage
from infrahaus_worker.discovery import parse_units
from infrahaus_worker.pipeline.failures import StepError
from infrahaus_worker.pipeline.files import checked_path
from infrahaus_worker.pipeline.packages import MANAGERS, install_arguments
from infrahaus_worker.pipeline.scripts import check_script_name

# Characters that matter to the rules, plus the ones a shell would read (they must be refused on both sides).
ALPHABET = "aZ09._-+@:/~^*<>=!,[] \n\t$;'\"`\\"
names = st.text(alphabet=ALPHABET, min_size=0, max_size=40)


def api_accepts(validate: object, *args: str) -> bool:
    try:
        validate(*args)  # type: ignore[operator]
    except v.UnsafeValueError:
        return False
    return True


@settings(max_examples=300)
@given(name=names | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True))
def test_script_names_accepted_by_the_api_run_in_the_worker(name: str) -> None:
    if api_accepts(v.validate_script_name, name):
        check_script_name(name)


@settings(max_examples=300)
@given(
    name=names | st.from_regex(r"\.?[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True),
    directory=names | st.from_regex(r"(/[A-Za-z0-9._@+-]{1,10}){0,4}", fullmatch=True),
)
def test_files_accepted_by_the_api_are_written_by_the_worker(name: str, directory: str) -> None:
    directory = directory or "/"
    if api_accepts(v.validate_file_name, name) and api_accepts(v.validate_target_path, directory):
        _, path = checked_path(SpecFile(name=name, target_path=directory, policy="replace", mode="0644", content=""))
        assert path.endswith(f"/{name}")


@settings(max_examples=500)
@given(
    manager=st.sampled_from(MANAGERS),
    spec=names
    | st.from_regex(
        r"(@[a-z0-9]{1,5}/)?[a-z0-9][a-z0-9.+_-]{1,20}([=@]|==|>=|~=)?[0-9][0-9.*^~-]{0,8}", fullmatch=True
    ),
)
def test_packages_accepted_by_the_api_are_installed_by_the_worker(manager: str, spec: str) -> None:
    try:
        name, version = v.parse_package_spec(manager, spec)
    except v.UnsafeValueError:
        return
    (argument,) = install_arguments([SpecPackage(name=name, manager=manager, version=version)])  # type: ignore[arg-type]
    assert argument.startswith(name)


@settings(max_examples=500)
@given(
    manager=st.sampled_from(MANAGERS),
    name=names | st.from_regex(r"(@[a-z0-9]{1,5}/)?[a-z0-9][a-z0-9.+_-]{1,20}", fullmatch=True),
    version=st.none() | names | st.from_regex(r"(==|>=|~=)?[0-9][0-9.*^~-]{0,8}", fullmatch=True),
)
def test_template_packages_accepted_by_the_api_are_installed_by_the_worker(
    manager: str, name: str, version: str | None
) -> None:
    # A template names a package and its version in separate fields (`POST /api/templates`, package groups).
    if not api_accepts(v.validate_package_name, manager, name):
        return
    if version is not None:
        if not api_accepts(v.validate_package_version, manager, version):
            return
        version = v.validate_package_version(manager, version)
    (argument,) = install_arguments([SpecPackage(name=name, manager=manager, version=version)])  # type: ignore[arg-type]
    assert argument.startswith(name)


@settings(max_examples=300)
@given(unit=names | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9:_.@-]{0,30}\.service", fullmatch=True))
def test_unit_names_accepted_by_the_api_reach_journalctl_unchanged(unit: str) -> None:
    # The service-logs endpoint runs `journalctl -u <unit>` with what the allow-list returns: one argv item that
    # cannot be read as an option.
    if api_accepts(v.validate_unit_name, unit):
        assert v.validate_unit_name(unit) == unit
        assert not unit.startswith("-")
        assert not any(ch.isspace() for ch in unit)


@settings(max_examples=300)
@given(unit=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9:_.@\\-]{0,30}", fullmatch=True) | names)
def test_units_the_worker_discovers_are_accepted_by_the_api(unit: str) -> None:
    listed = parse_units(f"{unit}.service loaded active running Some service\n")
    for found in listed:
        v.validate_unit_name(f"{found.name}.service")


@pytest.mark.parametrize(
    ("validate", "value"),
    [
        (v.validate_script_name, "setup\n"),
        (v.validate_file_name, "app.conf\n"),
        (v.validate_target_path, "/etc\n"),
        (v.validate_unit_name, "nginx.service\n"),
        (v.validate_hostname, "web\n"),
    ],
)
def test_a_trailing_newline_is_refused(validate: object, value: str) -> None:
    assert not api_accepts(validate, value)


@pytest.mark.parametrize(
    ("manager", "spec", "name", "version"),
    [
        ("apt", "nginx\n", "nginx\n", None),
        ("apt", "nginx=1.2\n", "nginx", "1.2\n"),
        ("pip", "flask==3.0\n", "flask", "==3.0\n"),
    ],
)
def test_a_trailing_newline_in_a_package_is_refused_by_both(
    manager: str, spec: str, name: str, version: str | None
) -> None:
    with pytest.raises(v.UnsafeValueError):
        v.parse_package_spec(manager, spec)
    with pytest.raises(StepError):
        install_arguments([SpecPackage(name=name, manager=manager, version=version)])  # type: ignore[arg-type]
