"""Allow-lists for names that reach a shell: examples, hostile inputs, and properties (hypothesis)."""

import posixpath
import shlex
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infrahaus_domain import allowlist as v
from infrahaus_domain.errors import ValidationFailed
from infrahaus_domain.templates.schemas import TemplateFileIn, TemplatePackageIn, TemplateScriptIn, TemplateWrite
from infrahaus_domain.templates.service import validate_template

HOSTILE = [
    "; rm -rf /",
    "$(reboot)",
    "`id`",
    "../../etc/passwd",
    "a\nb",
    "a'b",
    'a"b',
    "a b",
    "a|b",
    "a&b",
    "a>b",
    "a\\b",
    "$HOME",
    "a\x00b",
    "-rf",
    "",
]

# Shell metacharacters and anything else that shlex.quote would have to quote.
SHELL_SPECIALS = " \t\n\r\x00;&|$`'\"\\<>()[]{}*?!#~^"

NAME_VALIDATORS: dict[str, Callable[[str], str]] = {
    "script": v.validate_script_name,
    "file": v.validate_file_name,
    "bucket": v.validate_bucket_name,
    "label": v.validate_label,
    "tag": v.validate_tag,
    "unit": v.validate_unit_name,
    "hostname": v.validate_hostname,
    "storage": v.validate_storage,
    "bridge": v.validate_bridge,
    "os_template": v.validate_os_template,
    **{f"{m} package": partial(v.validate_package_name, m) for m in v.PACKAGE_MANAGERS},
}


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (v.validate_script_name, "00-base"),
        (v.validate_script_name, "setup.v2_final"),
        (v.validate_file_name, ".bashrc"),
        (v.validate_file_name, "nginx.conf"),
        (v.validate_target_path, "/"),
        (v.validate_target_path, "/etc/nginx/conf.d"),
        (v.validate_target_path, "/home/app/.config"),
        (v.validate_bucket_name, "web-dev"),
        (v.validate_unit_name, "nginx.service"),
        (v.validate_unit_name, "getty@tty1.service"),
        (v.validate_hostname, "web-01"),
        (v.validate_hostname, "a"),
        (v.validate_storage, "local-lvm"),
        (v.validate_bridge, "vmbr0"),
        (v.validate_os_template, "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
        (v.validate_os_template, "debian-12-standard"),
        (v.validate_template_name, "My App 2"),
        (partial(v.validate_package_name, "apt"), "python3-pip"),
        (partial(v.validate_package_name, "apt"), "libstdc++6"),
        (partial(v.validate_package_name, "apt"), "libc6:amd64"),
        (partial(v.validate_package_name, "pip"), "Flask_Login"),
        (partial(v.validate_package_name, "npm"), "@types/node"),
        (partial(v.validate_package_name, "npm"), "left-pad"),
        (partial(v.validate_package_version, "apt"), "1:2.3.4-1~deb12u1"),
        (partial(v.validate_package_version, "apt"), "1.22*"),
        (partial(v.validate_package_version, "pip"), ">=2,<3"),
        (partial(v.validate_package_version, "npm"), "^4.18.0"),
    ],
)
def test_accepts(validator: Callable[[str], str], value: str) -> None:
    assert validator(value) == value


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (v.validate_script_name, "-x"),
        (v.validate_script_name, "a" * 65),
        (v.validate_file_name, "."),
        (v.validate_file_name, ".."),
        (v.validate_file_name, "etc/passwd"),
        (v.validate_target_path, "etc/nginx"),
        (v.validate_target_path, "/etc/../root"),
        (v.validate_target_path, "/etc/./nginx"),
        (v.validate_target_path, "/etc//nginx"),
        (v.validate_target_path, "/etc/nginx/"),
        (v.validate_target_path, "/etc/ngi nx"),
        (v.validate_target_path, "/etc/$(id)"),
        (v.validate_target_path, "/etc\n/x"),
        (v.validate_target_path, "//etc"),
        (v.validate_target_path, "/" + "a" * 300),
        (v.validate_unit_name, "-.mount"),
        (v.validate_hostname, "-web"),
        (v.validate_hostname, "web-"),
        (v.validate_hostname, "a" * 64),
        (v.validate_hostname, "web.example.com"),
        (v.validate_os_template, "local:vztmpl/../../etc/passwd"),
        (v.validate_template_name, "two  spaces"),
        (v.validate_template_name, "trailing "),
        (partial(v.validate_package_name, "apt"), "Uppercase"),
        (partial(v.validate_package_name, "apt"), "a"),
        (partial(v.validate_package_name, "pip"), "flask[async]"),
        (partial(v.validate_package_name, "npm"), "@scope/"),
        (partial(v.validate_package_version, "pip"), "== 1.0"),
        (partial(v.validate_package_version, "npm"), "1 || 2"),
        (partial(v.validate_package_name, "gem"), "rails"),
        (v.validate_mode, "4755"),
        (v.validate_mode, "999"),
        (v.validate_policy, "overwrite"),
        (v.validate_manager, "gem"),
    ],
)
def test_rejects(validator: Callable[[str], str], value: str) -> None:
    with pytest.raises(v.UnsafeValueError):
        validator(value)


@pytest.mark.parametrize("kind", sorted(NAME_VALIDATORS))
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_are_rejected_everywhere(kind: str, value: str) -> None:
    with pytest.raises(v.UnsafeValueError):
        NAME_VALIDATORS[kind](value)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_target_paths_and_versions_are_rejected(value: str) -> None:
    with pytest.raises(v.UnsafeValueError):
        v.validate_target_path(value)
    if value != "-rf":  # inside an absolute path a leading "-" cannot be read as an option
        with pytest.raises(v.UnsafeValueError):
            v.validate_target_path("/srv/" + value)
    if "<" in value or ">" in value:
        return  # comparison operators are part of version ranges (and versions are always quoted)
    for manager in v.PACKAGE_MANAGERS:
        with pytest.raises(v.UnsafeValueError):
            v.validate_package_version(manager, value)


def test_normalisations() -> None:
    assert v.validate_mode("644") == "0644"
    assert v.validate_mode("0600") == "0600"
    assert v.validate_tag("Web") == "web"
    assert v.validate_package_version("pip", "3.0.0") == "==3.0.0"


@pytest.mark.parametrize(
    ("manager", "spec", "expected"),
    [
        ("apt", "nginx=1.22*", ("nginx", "1.22*")),
        ("apt", "curl", ("curl", None)),
        ("pip", "flask==3.0.0", ("flask", "==3.0.0")),
        ("pip", "gunicorn>=21,<23", ("gunicorn", ">=21,<23")),
        ("pip", "requests~=2.31", ("requests", "~=2.31")),
        ("npm", "express@4", ("express", "4")),
        ("npm", "@types/node@20", ("@types/node", "20")),
        ("npm", "@types/node", ("@types/node", None)),
        ("custom", "thing", ("thing", None)),
    ],
)
def test_package_specs_round_trip(manager: str, spec: str, expected: tuple[str, str | None]) -> None:
    assert v.parse_package_spec(manager, spec) == expected
    assert v.install_spec(manager, *expected) == spec


# ---------------------------------------------------------------- properties

SPECIAL_TEXT = st.tuples(st.text(max_size=20), st.sampled_from(SHELL_SPECIALS), st.text(max_size=20)).map("".join)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(NAME_VALIDATORS)), value=SPECIAL_TEXT)
def test_any_name_with_a_shell_metacharacter_is_rejected(kind: str, value: str) -> None:
    with pytest.raises(v.UnsafeValueError):
        NAME_VALIDATORS[kind](value)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(NAME_VALIDATORS)), value=st.text(max_size=80))
def test_accepted_names_quote_to_themselves(kind: str, value: str) -> None:
    try:
        accepted = NAME_VALIDATORS[kind](value)
    except v.UnsafeValueError:
        return
    assert shlex.quote(accepted) == accepted
    assert not accepted.startswith("-")


NAMEISH = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["script", "file", "bucket", "label"]), value=NAMEISH)
def test_plain_names_are_accepted(kind: str, value: str) -> None:
    assert NAME_VALIDATORS[kind](value) == value


PATHISH = st.lists(st.sampled_from(["etc", "..", ".", "", "a b", "x", "$(id)", "ü", "nginx", ".cfg"]), max_size=6).map(
    lambda parts: "/" + "/".join(parts)
) | st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(value=PATHISH)
def test_accepted_target_paths_are_absolute_normalised_and_quote_to_themselves(value: str) -> None:
    try:
        path = v.validate_target_path(value)
    except v.UnsafeValueError:
        assert value != "/etc"
        return
    assert path.startswith("/")
    assert posixpath.normpath(path) == path
    assert ".." not in path.split("/")
    assert shlex.quote(path) == path


@settings(max_examples=200, deadline=None)
@given(manager=st.sampled_from(v.PACKAGE_MANAGERS), value=st.text(max_size=40))
def test_accepted_versions_never_carry_quotes_spaces_or_substitutions(manager: str, value: str) -> None:
    try:
        version = v.validate_package_version(manager, value)
    except v.UnsafeValueError:
        return
    assert not set(version) & set(" \t\n\r\x00;&|$`'\"\\()[]{}")


# ---------------------------------------------------------------- a whole template


def test_validate_template_reports_every_field() -> None:
    data = TemplateWrite(
        name="ok",
        tags=["Web", "web", "bad tag"],
        scripts=[TemplateScriptIn(name="; rm -rf /", content="echo")],
        files=[TemplateFileIn(name="../x", target_path="../../etc/passwd", content="", mode="4755")],
        packages=[TemplatePackageIn(name="$(reboot)", manager="apt", version="1 2")],
        storage="local lvm",
    )
    with pytest.raises(ValidationFailed) as exc:
        validate_template(data)
    fields = {e.field for e in exc.value.errors}
    assert fields == {
        "tags.2",
        "scripts.0.name",
        "files.0.name",
        "files.0.target_path",
        "files.0.mode",
        "packages.0.name",
        "packages.0.version",
        "storage",
    }


def test_validate_template_normalises() -> None:
    data = TemplateWrite(
        name="ok",
        tags=["Web", "web", "db"],
        scripts=[
            TemplateScriptIn(name="late", content="", position=20),
            TemplateScriptIn(name="early", content="", position=5),
            TemplateScriptIn(name="unplaced", content=""),
        ],
        files=[TemplateFileIn(name="a", target_path="/etc", content="", mode="600")],
        packages=[TemplatePackageIn(name="flask", manager="pip", version="3.0.0")],
    )
    result = validate_template(data)
    assert result.tags == ["web", "db"]
    assert [(s.name, s.position) for s in result.scripts] == [("unplaced", 0), ("early", 1), ("late", 2)]
    assert result.files[0].mode == "0600"
    assert result.packages[0].version == "==3.0.0"


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (partial(v.validate_package_name, "npm"), "@" + "s" * 100 + "/" + "n" * 150),
        (partial(v.validate_package_version, "pip"), ">=" + "1" * 64 + ",<" + "9" * 64),
        (v.validate_os_template, "local" * 40 + ":vztmpl/" + "d" * 100),
    ],
)
def test_lengths_fit_the_database_columns(validator: Callable[[str], str], value: str) -> None:
    with pytest.raises(v.UnsafeValueError):
        validator(value)


def test_tag_count_is_capped() -> None:
    with pytest.raises(ValidationFailed) as exc:
        validate_template(TemplateWrite(name="t", tags=[f"t{i}" for i in range(33)]))
    assert [e.field for e in exc.value.errors] == ["tags"]
    assert len(validate_template(TemplateWrite(name="t", tags=[f"t{i}" for i in range(32)])).tags) == 32
