import sys

import pytest

from infrahaus.cli import VERBS, build_parser, main


def test_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([verb, "--help"])
    assert exc.value.code == 0
    assert verb in capsys.readouterr().out


def test_no_verb_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["pvesim", "--port", "8006"], ["dev", "--demo"]])
def test_simulator_verbs_explain_when_the_simulator_is_not_installed(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As in the production image, which leaves the simulator out: `import infrahaus_pvesim` fails.
    monkeypatch.setitem(sys.modules, "infrahaus_pvesim", None)
    assert main(argv) == 2
    assert "simulator is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["api", "worker", "dev"])
def test_a_bad_auth_server_fingerprint_stops_the_process_naming_the_variable(
    verb: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFRAHAUS_AUTH_SERVERS", '[{"name": "pve", "url": "https://pve:8006", "fingerprint": "AB:CD"}]')
    assert main([verb]) == 2
    err = capsys.readouterr().err
    assert "INFRAHAUS_AUTH_SERVERS" in err
    assert "fingerprint" in err
