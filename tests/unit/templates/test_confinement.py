"""Template discovery stays inside each template's directory: symbolic links are refused (never followed),
only regular files are read, and files, templates and directories have hard size and count limits. Each refusal
is reported for its template; no server file ever reaches a template."""

import os
from pathlib import Path

import pytest

from infrahaus_domain.templates.discovery import scan
from infrahaus_domain.templates.parser import (
    MAX_CONF_BYTES,
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    MAX_TEMPLATES,
    TemplateFormatError,
    parse_template_dir,
)
from infrahaus_domain.templates.schemas import DiscoveryError

SERVER_SECRET = "root:$6$server-password-hash-that-must-not-leak"


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@pytest.fixture
def server_file(tmp_path: Path) -> Path:
    """A file of the server outside every template (think /etc/shadow or the encryption key file)."""
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_text(SERVER_SECRET + "\n")
    return secret


def good(root: Path) -> Path:
    return write(
        root,
        {
            "template.conf": "TEMPLATE_APP=t\n",
            "container-configs/scripts/00-a.sh": "echo a\n",
            "container-configs/files/app.conf": "x=1\n",
            "container-configs/files/app.conf.path": "/etc/app\n",
        },
    )


@pytest.mark.parametrize(
    "link",
    [
        "template.conf",
        "container-configs/scripts/10-steal.sh",
        "container-configs/files/app.conf",
        "container-configs/files/app.conf.path",
        "container-configs/packages/base.apt",
    ],
)
def test_a_link_to_a_server_file_is_refused_not_read(tmp_path: Path, server_file: Path, link: str) -> None:
    root = good(tmp_path / "templates" / "t")
    target = root / link
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    target.symlink_to(server_file)
    with pytest.raises(TemplateFormatError, match="link") as raised:
        parse_template_dir(root)
    assert SERVER_SECRET not in str(raised.value)


@pytest.mark.parametrize("directory", ["container-configs", "container-configs/scripts", "container-configs/files"])
def test_a_linked_directory_is_refused(tmp_path: Path, server_file: Path, directory: str) -> None:
    root = good(tmp_path / "templates" / "t")
    outside = server_file.parent
    (outside / "00-x.sh").write_text("echo x\n")
    (outside / "scripts").mkdir()
    moved = root / directory
    for child in sorted(moved.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    moved.rmdir()
    moved.symlink_to(outside, target_is_directory=True)
    with pytest.raises(TemplateFormatError, match="link"):
        parse_template_dir(root)


def test_a_linked_template_directory_is_reported_and_the_others_still_sync(tmp_path: Path, server_file: Path) -> None:
    templates = tmp_path / "templates"
    good(templates / "fine")
    elsewhere = good(tmp_path / "elsewhere" / "t")
    (elsewhere / "container-configs/scripts/00-a.sh").write_text(SERVER_SECRET)
    (templates / "linked").symlink_to(elsewhere, target_is_directory=True)
    results = scan(templates)
    errors = {r.template: r.error for r in results if isinstance(r, DiscoveryError)}
    assert set(errors) == {"linked"}
    assert "link" in errors["linked"]
    assert [r.source_dir for r in results if not isinstance(r, DiscoveryError)] == ["fine"]
    assert SERVER_SECRET not in repr(results)


def test_only_regular_files_are_read_a_fifo_does_not_hang_discovery(tmp_path: Path) -> None:
    root = write(tmp_path / "t", {"container-configs/scripts/00-a.sh": "echo\n"})
    os.mkfifo(root / "template.conf")
    with pytest.raises(TemplateFormatError, match="not a regular file"):
        parse_template_dir(root)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"container-configs/scripts/00-big.sh": "#" * (MAX_FILE_BYTES + 1)}, "larger than"),
        (
            {
                "container-configs/files/big.bin": "x" * (MAX_FILE_BYTES + 1),
                "container-configs/files/big.bin.path": "/",
            },
            "larger than",
        ),
        ({"template.conf": "# " + "x" * MAX_CONF_BYTES}, "larger than"),
        (
            {"container-configs/files/a.conf": "x", "container-configs/files/a.conf.path": "/etc\n" * 2000},
            "larger than",
        ),
    ],
)
def test_files_over_the_size_limits_are_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    root = write(tmp_path / "t", {"template.conf": "TEMPLATE_APP=t\n", **files})
    with pytest.raises(TemplateFormatError, match=message):
        parse_template_dir(root)


def test_a_template_over_its_total_size_is_refused(tmp_path: Path) -> None:
    scripts = {f"container-configs/scripts/{n:02d}-s.sh": "#" * (MAX_FILE_BYTES - 10) for n in range(20)}
    root = write(tmp_path / "t", {"template.conf": "", **scripts})
    with pytest.raises(TemplateFormatError, match="larger than"):
        parse_template_dir(root)


def test_directories_with_too_many_entries_are_refused(tmp_path: Path) -> None:
    scripts = {f"container-configs/scripts/{n:04d}-s.sh": "true\n" for n in range(MAX_ENTRIES + 1)}
    root = write(tmp_path / "t", {"template.conf": "", **scripts})
    with pytest.raises(TemplateFormatError, match=f"more than {MAX_ENTRIES} entries"):
        parse_template_dir(root)


def test_templates_beyond_the_limit_are_reported(tmp_path: Path) -> None:
    for n in range(MAX_TEMPLATES + 2):
        write(tmp_path / f"t{n:04d}", {"template.conf": ""})
    results = scan(tmp_path)
    refused = [r.template for r in results if isinstance(r, DiscoveryError)]
    assert refused == [f"t{n:04d}" for n in (MAX_TEMPLATES, MAX_TEMPLATES + 1)]
