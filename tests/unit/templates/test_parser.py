"""The on-disk template format: template.conf assignments, scripts, package lists, files with sidecars."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infrahaus_domain.templates.parser import (
    TemplateFormatError,
    parse_conf,
    parse_package_lines,
    parse_template_dir,
    template_dirs,
    template_from_conf,
)
from infrahaus_domain.templates.service import validate_template
from infrahaus_worker.helpers import HELPERS_PATH

REPO_TEMPLATES = Path(__file__).resolve().parents[3] / "templates"


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


# ---------------------------------------------------------------- template.conf values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('A="double quoted"', "double quoted"),
        ("A='single $quoted \\n'", "single $quoted \\n"),
        ("A=plain", "plain"),
        ("A=", ""),
        ("A=''", ""),
        ("A=con'cat'\"enated\"", "concatenated"),
        ('A="esc \\" \\\\ \\$HOME \\` \\n"', 'esc " \\ $HOME ` \\n'),
        ("A=back\\ slash\\;", "back slash;"),
        ('A="# not a comment"', "# not a comment"),
        ("A='# not a comment'   # but this is", "# not a comment"),
        ("A=a#b", "a#b"),
        ("A=1 # set to 0 for privileged", "1"),
        ("A=1\t# tab before the comment", "1"),
        ('A="1" # quoted, then a comment', "1"),
        ("export A=exported", "exported"),
        ("export   A='exported'  # comment", "exported"),
        ('A="${UNSET:-fallback}"', "fallback"),
        ("A=${UNSET:-fallback value}", "fallback value"),
        ("A=${UNSET:-'quoted # default'}", "quoted # default"),
        ('A="${UNSET:-"inner"}"', "inner"),
        ("A=${UNSET-dash}", "dash"),
        ("A=${UNSET:=assign}", "assign"),
        ("A=${UNSET:-${ALSO_UNSET:-nested}}", "nested"),
        ('A="multi\nline"', "multi\nline"),
        ("A=line\\\ncontinued", "linecontinued"),
        ("A=$", "$"),
        ('A="cost: 5$"', "cost: 5$"),
    ],
)
def test_conf_values(text: str, expected: str) -> None:
    assert parse_conf(text)["A"] == expected


def test_conf_expansions_see_earlier_assignments_and_defaults() -> None:
    conf = parse_conf(
        "B=base\n"
        "EMPTY=\n"
        'A="${B}/x"\n'
        "C=$B-suffix\n"
        "D=${EMPTY:-colon-default}\n"
        "E=${EMPTY-no-colon-keeps-empty}\n"
        'F="${B:-ignored}"\n'
        "G=${UNSET:=set-here} H=$UNSET\n"
    )
    assert conf["A"] == "base/x"
    assert conf["C"] == "base-suffix"
    assert conf["D"] == "colon-default"
    assert conf["E"] == ""
    assert conf["F"] == "base"
    assert conf["G"] == "set-here"
    assert conf["H"] == "set-here"


def test_conf_self_referencing_default_uses_the_default_when_unset() -> None:
    conf = parse_conf('TEMPLATE_CPU="${TEMPLATE_CPU:-2}"\n')
    assert conf == {"TEMPLATE_CPU": "2"}
    assert parse_conf('TEMPLATE_CPU="${TEMPLATE_CPU:-2}"\n', {"TEMPLATE_CPU": "8"}) == {"TEMPLATE_CPU": "8"}


def test_conf_comments_blank_lines_and_several_assignments_per_line() -> None:
    conf = parse_conf("# heading\n\n   # indented comment\nA=1 B=2; C=3\nexport D E\n")
    assert conf == {"A": "1", "B": "2", "C": "3"}


def test_conf_later_assignment_wins() -> None:
    assert parse_conf("A=1\nA=2\n") == {"A": "2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=$(id)", "command substitution"),
        ('A="$(id)"', "command substitution"),
        ("A=`id`", "command substitution"),
        ('A="`id`"', "command substitution"),
        ("A=b c", "unexpected text"),
        ("rm -rf /", "expected NAME=value"),
        ("A=1 && rm -rf /", "unexpected text"),
        ("A=1|cat", "unsupported shell syntax"),
        ("A=(1 2)", "unsupported shell syntax"),
        ("A='unterminated", "unterminated single quote"),
        ('A="unterminated', "unterminated double quote"),
        ("A=${B", "unterminated"),
        ("A=${B#x}", "unsupported parameter expansion"),
        ("A=${}", "bad parameter expansion"),
    ],
)
def test_conf_rejects_what_would_run_or_is_malformed(text: str, message: str) -> None:
    with pytest.raises(TemplateFormatError, match=message):
        parse_conf(text)


def test_conf_errors_name_the_line() -> None:
    with pytest.raises(TemplateFormatError, match="line 3"):
        parse_conf("A=1\nB=2\nC=$(whoami)\n")


# The same texts, read by real bash: the parser must agree with the shell it imitates.
BASH_CASES = [
    'A="x \\" \\\\ \\$ \\` \\n y"\nB=\'lit $A\'\nC=pre"$B"post',
    "TEMPLATE_UNPRIVILEGED=1 # set to 0 for privileged\nTEMPLATE_NESTING=0#not-a-comment",
    'export X="${X:-default}"  # comment\nY=${X}-${UNSET:-${X:-z}}',
    "A=back\\ slash\\$\nB=${A:+}${UNSET-}\nC='a'\"b\"c\\\nd",
    'E=\nF=${E:-e-empty}\nG=${E-kept}\nH="${UNSET:-"in quotes"}"',
    "I=a#b J=' sp  aces ' K=\"tab\tin\"",
]


@pytest.mark.parametrize("text", BASH_CASES)
def test_conf_agrees_with_bash(text: str, tmp_path: Path) -> None:
    ours = parse_conf(text)
    conf = tmp_path / "template.conf"
    conf.write_text(text + "\n")
    names = " ".join(ours)
    script = f'source "$1"; for n in {names}; do printf "%s=%s\\0" "$n" "${{!n}}"; done'
    bash = shutil.which("bash")
    assert bash is not None
    out = subprocess.run([bash, "--norc", "-c", script, "bash", str(conf)], capture_output=True, check=True, env={})
    theirs = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if item)
    assert ours == theirs


# ---------------------------------------------------------------- template.conf -> template fields


def test_trailing_comment_does_not_make_a_template_privileged() -> None:
    # The original system read "1 # set to 0 for privileged" as the value, which is not "1": privileged.
    template = template_from_conf(parse_conf("TEMPLATE_UNPRIVILEGED=1 # set to 0 for privileged\n"), "t")
    assert template.unprivileged is True
    template = template_from_conf(parse_conf("TEMPLATE_UNPRIVILEGED=0 # privileged on purpose\n"), "t")
    assert template.unprivileged is False


def test_original_keys_map_to_fields() -> None:
    conf = parse_conf(
        'TEMPLATE_APP="dokploy"\n'
        'TEMPLATE_TAGS="deployment;docker; paas ;"\n'
        'TEMPLATE_DESCRIPTION="Self-hosted PaaS"\n'
        'TEMPLATE_CPU="${TEMPLATE_CPU:-2}"\n'
        'TEMPLATE_RAM="${TEMPLATE_RAM:-2048}"\n'
        'TEMPLATE_DISK="${TEMPLATE_DISK:-20}"\n'
        'TEMPLATE_OS="${TEMPLATE_OS:-debian}"\n'
        'TEMPLATE_VERSION="${TEMPLATE_VERSION:-12}"\n'
        'TEMPLATE_UNPRIVILEGED="${TEMPLATE_UNPRIVILEGED:-1}"\n'
        'TEMPLATE_NESTING="${TEMPLATE_NESTING:-1}"\n'
        "TEMPLATE_KEYCTL=yes\n"
        "TEMPLATE_FUSE=off\n"
        'TEMPLATE_CONFIG_PATH="infra/lxc/templates/dokploy/container-configs"\n'
    )
    template = template_from_conf(conf, "dokploy-dir")
    assert template.name == "dokploy"
    assert template.tags == ["deployment", "docker", "paas"]
    assert template.description == "Self-hosted PaaS"
    assert (template.cores, template.memory_mb, template.disk_gb) == (2, 2048, 20)
    assert template.os_template == "debian-12-standard"
    assert (template.unprivileged, template.nesting, template.keyctl, template.fuse) == (True, True, True, False)


def test_project_keys_and_defaults() -> None:
    conf = parse_conf(
        "TEMPLATE_NAME=own\nTEMPLATE_CORES=4\nTEMPLATE_MEMORY=4096\nTEMPLATE_SWAP=0\n"
        "TEMPLATE_OSTEMPLATE=local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\n"
        "TEMPLATE_STORAGE=fast\nTEMPLATE_BRIDGE=vmbr1\n"
    )
    template = template_from_conf(conf, "dir")
    assert (template.name, template.cores, template.memory_mb, template.swap_mb) == ("own", 4, 4096, 0)
    assert template.os_template == "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    assert (template.storage, template.bridge) == ("fast", "vmbr1")
    bare = template_from_conf({}, "dir-name")
    assert bare.name == "dir-name"
    assert bare.os_template is None
    assert (bare.unprivileged, bare.nesting, bare.cores, bare.storage) == (True, False, 1, "local-lvm")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TEMPLATE_UNPRIVILEGED=maybe", "TEMPLATE_UNPRIVILEGED must be 0 or 1"),
        ("TEMPLATE_NESTING='1 # inside quotes is the value'", "TEMPLATE_NESTING must be 0 or 1"),
        ("TEMPLATE_CPU=two", "TEMPLATE_CPU must be a whole number"),
        ("TEMPLATE_RAM=-5", "TEMPLATE_RAM must be a whole number"),
    ],
)
def test_bad_template_values_are_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateFormatError, match=message):
        template_from_conf(parse_conf(text), "t")


# ---------------------------------------------------------------- container-configs


def test_scripts_are_ordered_by_numeric_prefix(tmp_path: Path) -> None:
    root = write(
        tmp_path / "t",
        {
            "template.conf": "TEMPLATE_APP=t\n",
            "container-configs/scripts/10-last.sh": "#!/bin/sh\n# description: runs last\necho 10\n",
            "container-configs/scripts/2-middle.sh": "#!/bin/sh\necho 2\n",
            "container-configs/scripts/01-first.sh": "#!/bin/sh\n\n# Prepares things.\necho 1\n",
            "container-configs/scripts/.gitkeep": "",
            "container-configs/scripts/README.md": "not a script",
        },
    )
    scripts = parse_template_dir(root).template.scripts
    assert [(s.name, s.position) for s in scripts] == [("01-first", 0), ("2-middle", 1), ("10-last", 2)]
    assert [s.description for s in scripts] == ["Prepares things.", "", "runs last"]
    assert scripts[2].content == "#!/bin/sh\n# description: runs last\necho 10\n"
    assert all(s.enabled for s in scripts)


@pytest.mark.parametrize("name", ["setup.sh", "10_setup.sh", "10-setup.bash", "10-.sh"])
def test_script_names_must_follow_nn_name(tmp_path: Path, name: str) -> None:
    root = write(tmp_path / "t", {"template.conf": "", f"container-configs/scripts/{name}": "echo\n"})
    with pytest.raises(TemplateFormatError, match=r"NN-name\.sh"):
        parse_template_dir(root)


def test_package_lines_strip_comments_and_blanks() -> None:
    text = "# full-line comment\n\ncurl   # inline comment\n  git\t\n\t# indented comment\nvim#not-a-comment\n"
    assert parse_package_lines(text) == [(3, "curl"), (4, "git"), (6, "vim#not-a-comment")]


def test_packages_keep_version_pins_and_group(tmp_path: Path) -> None:
    root = write(
        tmp_path / "t",
        {
            "template.conf": "",
            "container-configs/packages/base.apt": "# system\ncurl\nnginx=1.22*   # pinned\n\nlibc6:amd64\ncurl\n",
            "container-configs/packages/web.npm": "express@4\n@types/node@20\nleft-pad\n",
            "container-configs/packages/app.pip": "flask==3.0.0\ngunicorn>=21,<23 # range\nrequests\n",
        },
    )
    packages = parse_template_dir(root).template.packages
    assert [(p.bucket, p.manager, p.name, p.version) for p in packages] == [
        ("app", "pip", "flask", "==3.0.0"),
        ("app", "pip", "gunicorn", ">=21,<23"),
        ("app", "pip", "requests", None),
        ("base", "apt", "curl", None),
        ("base", "apt", "nginx", "1.22*"),
        ("base", "apt", "libc6:amd64", None),
        ("web", "npm", "express", "4"),
        ("web", "npm", "@types/node", "20"),
        ("web", "npm", "left-pad", None),
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"container-configs/packages/base.apk": "curl\n"}, "<group>.apt"),
        ({"container-configs/packages/base.apt": "curl; rm -rf /\n"}, "base.apt line 1"),
        ({"container-configs/packages/base.apt": "ok\n$(reboot)\n"}, "base.apt line 2"),
        ({"container-configs/packages/bad group.pip": "flask\n"}, "package group"),
    ],
)
def test_bad_package_lists_are_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    root = write(tmp_path / "t", {"template.conf": "", **files})
    with pytest.raises(TemplateFormatError, match=message):
        parse_template_dir(root)


def test_files_read_their_sidecars(tmp_path: Path) -> None:
    root = write(
        tmp_path / "t",
        {
            "template.conf": "",
            "container-configs/files/nginx.conf": "server {}\n",
            "container-configs/files/nginx.conf.path": "/etc/nginx\n",
            "container-configs/files/nginx.conf.policy": "backup\n",
            "container-configs/files/.bashrc": "alias ll='ls -l'\n",
            "container-configs/files/.bashrc.path": "# the home of root\n/root\n",
            "container-configs/files/.bashrc.policy": "replace",
            "container-configs/files/.bashrc.mode": "600",
            "container-configs/files/motd": "hi\n",
            "container-configs/files/motd.path": "/etc",
        },
    )
    files = {f.name: f for f in parse_template_dir(root).template.files}
    assert set(files) == {"nginx.conf", "motd"}  # hidden files are skipped, like .gitkeep
    assert (files["nginx.conf"].target_path, files["nginx.conf"].policy) == ("/etc/nginx", "backup")
    assert files["nginx.conf"].content == "server {}\n"
    assert (files["motd"].policy, files["motd"].mode) == ("default", "0644")


def test_file_mode_sidecar(tmp_path: Path) -> None:
    root = write(
        tmp_path / "t",
        {
            "template.conf": "",
            "container-configs/files/secret.env": "X=1\n",
            "container-configs/files/secret.env.path": "/etc/app",
            "container-configs/files/secret.env.mode": "0600",
        },
    )
    assert parse_template_dir(root).template.files[0].mode == "0600"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"container-configs/files/a.conf": "x"}, r"missing a.conf.path"),
        (
            {
                "container-configs/files/a.conf": "x",
                "container-configs/files/a.conf.path": "/etc",
                "container-configs/files/a.conf.policy": "overwrite",
            },
            "one of replace, default, backup",
        ),
        ({"container-configs/files/ghost.path": "/etc"}, "sidecar without a file"),
        ({"container-configs/files/sub/a.conf": "x"}, "only plain files"),
    ],
)
def test_bad_files_are_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    root = write(tmp_path / "t", {"template.conf": "", **files})
    with pytest.raises(TemplateFormatError, match=message):
        parse_template_dir(root)


def test_missing_conf_and_non_utf8_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TemplateFormatError, match=r"missing template\.conf"):
        parse_template_dir(tmp_path / "empty")
    root = write(tmp_path / "t", {"template.conf": ""})
    (root / "container-configs" / "scripts").mkdir(parents=True)
    (root / "container-configs" / "scripts" / "00-bin.sh").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TemplateFormatError, match="not UTF-8"):
        parse_template_dir(root)


def test_content_hash_follows_content_only(tmp_path: Path) -> None:
    root = write(tmp_path / "t", {"template.conf": "TEMPLATE_CPU=1\n", "container-configs/scripts/00-a.sh": "a\n"})
    first = parse_template_dir(root).content_hash
    (root / "template.conf").write_text("TEMPLATE_CPU=1\n")  # rewritten, same content
    assert parse_template_dir(root).content_hash == first
    (root / "container-configs/scripts/00-a.sh").write_text("b\n")
    assert parse_template_dir(root).content_hash != first


def test_template_dirs_lists_only_directories_with_a_conf(tmp_path: Path) -> None:
    write(tmp_path, {"b/template.conf": "", "a/template.conf": "", "c/readme": "", ".hidden/template.conf": ""})
    (tmp_path / "file").write_text("")
    assert [p.name for p in template_dirs(tmp_path)] == ["a", "b"]
    assert template_dirs(tmp_path / "missing") == []


# ---------------------------------------------------------------- the shipped examples


def test_example_templates_parse_and_validate() -> None:
    parsed = {p.name: parse_template_dir(p) for p in template_dirs(REPO_TEMPLATES)}
    assert {"web-hello", "app-stack"} <= set(parsed)
    for item in parsed.values():
        validate_template(item.template)

    web = parsed["web-hello"].template
    assert web.unprivileged is True
    assert web.os_template == "debian-12-standard"
    assert any("-p 8080" in s.content and "save_credential web " in s.content for s in web.scripts)

    app = parsed["app-stack"].template
    assert {f.policy for f in app.files} == {"replace", "default", "backup"}
    assert {p.manager for p in app.packages} == {"apt", "pip"}
    assert [s.name for s in app.scripts] == ["00-base", "10-user", "20-app", "30-service"]
    assert any("-p 8081" in s.content for s in app.scripts)
    assert any("save_credential" in s.content for s in app.scripts)


HELPER_CALL = re.compile(r"\b(?:log|save|detect|run_as|ensure|generate)_[a-z_]+")


def test_example_scripts_are_valid_sh_using_only_the_helper_library() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    listed = subprocess.run(
        [bash, "--norc", "-c", 'source "$1"; declare -F', "bash", str(HELPERS_PATH)],
        capture_output=True,
        text=True,
        check=True,
    )
    defined = {line.split()[-1] for line in listed.stdout.splitlines()}
    scripts = sorted(REPO_TEMPLATES.glob("*/container-configs/scripts/*.sh"))
    assert scripts
    for script in scripts:
        result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{script}: {result.stderr}"
        called = set(HELPER_CALL.findall(script.read_text()))
        assert called <= defined, f"{script} calls what the helper library does not define: {called - defined}"


# ---------------------------------------------------------------- differential property test against bash

_PLAIN = st.text(alphabet="ABCxyz019_./:,+=@%-", min_size=1, max_size=6)
_SINGLE = st.text(alphabet=' abc$`"\\#;|&()*?{}!~\t', max_size=8).map(lambda t: f"'{t}'")
_DOUBLE_CHUNK = st.one_of(
    st.text(alphabet=" abc#';|&()*?{}!~\t", min_size=1, max_size=5),
    st.sampled_from(['\\"', "\\\\", "\\$", "\\`", "\\n", "\\a", "$A", "${B}", "${UNSET:-d e f}", "${A:+alt}"]),
)
_DOUBLE = st.lists(_DOUBLE_CHUNK, max_size=4).map(lambda chunks: '"' + "".join(chunks) + '"')
_EXPANSION = st.one_of(
    st.sampled_from(["$A", "${B}", "${UNSET:-fallback}", "${A-unused}", "${EMPTY:-x}", "${EMPTY-y}"]),
    _SINGLE.map(lambda q: "${UNSET:-" + q + "}"),
    _DOUBLE.map(lambda q: "${UNSET:-" + q + "}"),
)
_ESCAPED = st.sampled_from(["\\ ", "\\#", "\\;", "\\$", "\\'", '\\"', "\\\\", "\\a"])
_VALUE = st.lists(st.one_of(_PLAIN, _SINGLE, _DOUBLE, _EXPANSION, _ESCAPED), max_size=5).map("".join)
_COMMENT = st.one_of(st.just(""), st.text(alphabet=" abc'\"$`;|&#()", max_size=10).map(lambda t: "  # " + t))
_LINE = st.tuples(st.sampled_from(["C", "D", "TEMPLATE_X", "A"]), _VALUE, _COMMENT, st.booleans()).map(
    lambda parts: ("export " if parts[3] else "") + f"{parts[0]}={parts[1]}{parts[2]}"
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(lines=st.lists(_LINE, min_size=1, max_size=4))
def test_conf_agrees_with_bash_on_generated_files(lines: list[str]) -> None:
    text = "A=alpha\nB='be ta'\nEMPTY=\n" + "\n".join(lines) + "\n"
    ours = parse_conf(text)
    bash = shutil.which("bash")
    assert bash is not None
    names = " ".join(ours)
    script = f'source /dev/stdin; for n in {names}; do printf "%s=%s\\0" "$n" "${{!n}}"; done'
    out = subprocess.run([bash, "--norc", "-c", script], input=text.encode(), capture_output=True, check=True, env={})
    theirs = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if item)
    assert ours == theirs, text
