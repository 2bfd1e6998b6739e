"""The conformance table (libs/proxmox/CONFORMANCE.md) cites source and tests that exist: every row names a Proxmox
source and at least one test, and every test it names is defined where it says."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TABLE = (ROOT / "libs/proxmox/CONFORMANCE.md").read_text()
PREFIXES = {"sim/": "integration/simulator/", "client/": "integration/proxmox/", "worker/": "integration/worker/"}
_CITATION = re.compile(r"`(…|[\w/]+\.py)(?:::([\w\[\]-]+|…))?`")


def _rows() -> list[list[str]]:
    rows = []
    for line in TABLE.splitlines():
        if re.match(r"^\| \d+ \|", line):
            # A `|` inside a cell is escaped (`\\|`).
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return rows


def _tests(cell: str) -> list[tuple[str, str | None]]:
    """(file under tests/, test name or None) for every citation in a Tests cell; `…` repeats the last file."""
    found: list[tuple[str, str | None]] = []
    last = ""
    for file, name in _CITATION.findall(cell):
        if file == "…":
            file = last
        last = file
        for short, long in PREFIXES.items():
            if file.startswith(short):
                file = long + file[len(short) :]
        found.append((file, name or None))
    return found


def test_every_row_has_a_source_and_a_test() -> None:
    rows = _rows()
    assert len(rows) >= 30
    numbers = [int(row[0]) for row in rows]
    assert numbers == list(range(1, len(rows) + 1))
    for row in rows:
        number, _what, source, _sim, _product, tests = row
        assert re.search(r"pve-|libanyevent|LXC|pct\.pm|Tasks\.pm|Status\.pm", source), f"row {number}: no source"
        assert _tests(tests), f"row {number}: no test"


def test_every_cited_test_exists() -> None:
    missing = []
    for row in _rows():
        for file, name in _tests(row[-1]):
            path = ROOT / "tests" / file
            if not path.is_file():
                missing.append(f"row {row[0]}: {file}")
                continue
            if name is not None and not re.search(rf"^(async )?def {re.escape(name)}\(", path.read_text(), re.M):
                missing.append(f"row {row[0]}: {file}::{name}")
    assert not missing, missing
