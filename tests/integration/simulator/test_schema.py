"""The vendored PVE schema and the request validator built on it."""

import gzip
import json
from importlib import resources
from pathlib import Path

import pytest

from infrahaus_pvesim import validate_request
from infrahaus_pvesim.schema import UnknownPathError, match_path

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference"


def _errors(method: str, path: str, params: dict[str, str]) -> dict[str, str]:
    return {v.field: v.message for v in validate_request(method, path, params)}


def test_vendored_schema_equals_the_reference() -> None:
    package = resources.files("infrahaus_pvesim")
    vendored = gzip.decompress(package.joinpath("pve-openapi.json.gz").read_bytes())
    assert vendored == (REFERENCE / "pve-openapi.json").read_bytes()
    assert package.joinpath("pve-openapi.LICENSE").read_text() == (REFERENCE / "pve-openapi.LICENSE").read_text()
    assert len(json.loads(vendored)["paths"]) == 410


def test_concrete_path_matches_its_template() -> None:
    route = match_path("POST", "/api2/json/nodes/pve/lxc/100/status/start")
    assert route.operation.template == "/nodes/{node}/lxc/{vmid}/status/start"
    assert route.path_params == {"node": "pve", "vmid": "100"}
    # Literal segments win over templated ones.
    assert match_path("GET", "/nodes/pve/lxc").operation.template == "/nodes/{node}/lxc"
    with pytest.raises(UnknownPathError, match="Method 'GET /nodes/pve/nothing' not implemented"):
        match_path("GET", "/nodes/pve/nothing")
    assert _errors("PATCH", "/version", {}) == {"path": "Method 'PATCH /version' not implemented"}


def test_a_full_create_request_is_valid() -> None:
    params = {
        "vmid": "100",
        "ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        "hostname": "web-1.example.com",
        "memory": "1024",
        "swap": "0",
        "cores": "2",
        "rootfs": "local-lvm:8",
        "net0": "name=eth0,bridge=vmbr0,ip=dhcp,ip6=auto,firewall=1",
        "net1": "name=eth1,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1,tag=20",
        "mp0": "local-lvm:4,mp=/srv/data",
        "features": "nesting=1,keyctl=1",
        "unprivileged": "1",
        "start": "0",
        "ssh-public-keys": "ssh-ed25519 AAAA test",
        "tags": "infrahaus;web",
    }
    assert validate_request("POST", "/nodes/pve/lxc", params) == []


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"bogus": "1"}, "bogus", "property is not defined in schema"),
        ({"net99999": "name=eth0"}, "net99999", "property is not defined in schema"),
        ({"memory": "lots"}, "memory", "type check ('integer') failed - got 'lots'"),
        ({"memory": "8"}, "memory", "value must have a minimum value of 16"),
        ({"cores": "9000"}, "cores", "value must have a maximum value of 8192"),
        ({"cpulimit": "1.5x"}, "cpulimit", "type check ('number') failed"),
        ({"unprivileged": "true"}, "unprivileged", "type check ('boolean') failed - got 'true'"),
        ({"arch": "sparc"}, "arch", "value 'sparc' does not have a value in the enumeration 'amd64, i386"),
        ({"description": "x" * 9000}, "description", "value may only be 8192 characters long"),
        ({"hostname": "bad_host!"}, "hostname", "invalid format - value does not look like a valid DNS name"),
        ({"tags": "a:b"}, "tags", "invalid format - invalid characters in tag"),
        ({"net0": "bridge=vmbr0"}, "net0", "invalid format - name: property is missing"),
        ({"net0": "name=eth0,speed=10"}, "net0", "invalid format - speed: property is not defined"),
        (
            {"net0": "name=eth0,ip=10.0.0.5"},
            "net0",
            "invalid format - ip: invalid format - value does not look like a valid IPv4 config",
        ),
        ({"net0": "name=eth0,trunks=a;b"}, "net0", "invalid format - trunks: value does not match the regex pattern"),
        ({"features": "nesting=yes"}, "features", "invalid format - nesting: type check ('boolean') failed"),
        ({"vmid": "99"}, "vmid", "value must have a minimum value of 100"),
    ],
)
def test_create_violations_carry_pve_messages(params: dict[str, str], field: str, message: str) -> None:
    base = {"vmid": "100", "ostemplate": "local:vztmpl/x.tar.zst"}
    errors = _errors("POST", "/nodes/pve/lxc", base | params)
    assert list(errors) == [field]
    assert message in errors[field]


def test_required_and_path_parameters_are_checked() -> None:
    assert _errors("POST", "/nodes/pve/lxc", {}) == {
        "ostemplate": "property is missing and it is not optional",
        "vmid": "property is missing and it is not optional",
    }
    assert _errors("GET", "/nodes/pve/lxc/abc/config", {}) == {"vmid": "type check ('integer') failed - got 'abc'"}
    assert _errors("GET", "/nodes/bad_node!/status", {}) == {
        "node": "invalid format - value does not look like a valid node name"
    }


def test_string_bounds_and_perl_patterns_from_the_file_apply() -> None:
    # bwlimit's minimum is the string "0" in the file; userid's pattern uses Perl's (?^:...) groups.
    errors = _errors("POST", "/nodes/pve/lxc", {"vmid": "100", "ostemplate": "local:vztmpl/x", "bwlimit": "-1"})
    assert errors == {"bwlimit": "value must have a minimum value of 0"}
    assert _errors("GET", "/access/permissions", {"userid": "root@pam!infrahaus"}) == {}
    assert _errors("GET", "/access/permissions", {"userid": "no-realm"}) == {
        "userid": "value does not match the regex pattern"
    }


def test_multi_valued_parameter_is_refused() -> None:
    violations = validate_request("GET", "/cluster/resources", {"type": ["vm", "node"]})
    assert [v.field for v in violations] == ["type"]
    assert validate_request("GET", "/cluster/resources", {"type": ["vm"]}) == []
