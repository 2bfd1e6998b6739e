"""Every pattern that guards an input matches the whole string: a trailing newline is refused.

msgspec checks a `pattern` with `re.search`, where `$` also matches just before a final newline; so each pattern
of the OpenAPI document (every request body, parameter and stored node field) is tried with a value it accepts
plus a newline.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infrahaus_proxmox import LxcCreate, LxcFeatures, LxcNetwork
from infrahaus_proxmox._paths import node_segment, storage_segment
from infrahaus_proxmox.client import TokenAuth

DOCUMENT = Path(__file__).resolve().parents[3] / "openapi" / "openapi.json"


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


PATTERNS = sorted(set(_patterns(json.loads(DOCUMENT.read_text()))))


def test_the_document_has_patterns_to_check() -> None:
    # The node registry alone guards host, token id, secret, fingerprint, SSH user and host key with patterns.
    assert len(PATTERNS) >= 8


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_refuses_an_accepted_value_with_a_trailing_newline(pattern: str) -> None:
    compiled = re.compile(pattern)

    @settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.from_regex(compiled, fullmatch=True).filter(lambda s: "\n" not in s))
    def check(value: str) -> None:
        assert compiled.search(value), value
        assert compiled.search(value + "\n") is None, f"{pattern!r} accepts {value!r} + newline"

    check()


@pytest.mark.parametrize(
    ("check", "value"),
    [(node_segment, "pve\n"), (storage_segment, "local-lvm\n")],
)
def test_stored_node_names_are_checked_whole_before_they_reach_a_path(check: Any, value: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        check(value)


def test_a_token_id_with_a_trailing_newline_never_reaches_a_header() -> None:
    with pytest.raises(ValueError, match="token_id"):
        TokenAuth("root@pam!infrahaus\n", "secret")


@pytest.mark.parametrize(
    "network",
    [
        LxcNetwork(name="eth0", bridge="vmbr0", ip6="fd00::5/64", gw6="fe80::1%eth0,gw=192.0.2.1"),
        LxcNetwork(name="eth0", bridge="vmbr0,firewall=0"),
        LxcNetwork(name="eth0", bridge="vmbr0", ip="10.0.0.5/24 "),
        LxcNetwork(name="eth0\nx", bridge="vmbr0"),
        LxcNetwork(name="eth0", bridge="vmbr0", type="veth=1"),
    ],
)
def test_net0_refuses_values_that_would_add_keys(network: LxcNetwork) -> None:
    with pytest.raises(ValueError, match="property string"):
        network.render()


@pytest.mark.parametrize(
    "create",
    [
        LxcCreate(vmid=100, ostemplate="local:vztmpl/x.tar.zst", rootfs="local-lvm:8,mountoptions=noexec"),
        LxcCreate(vmid=100, ostemplate="local:vztmpl/x.tar.zst", rootfs="local-lvm:8 size=1"),
        LxcCreate(vmid=100, ostemplate="local:vztmpl/x.tar.zst", rootfs="local-lvm:8", tags=["a,b"]),
        LxcCreate(
            vmid=100, ostemplate="local:vztmpl/x.tar.zst", rootfs="local-lvm:8", features=LxcFeatures(mount=["nfs,x=1"])
        ),
    ],
)
def test_rootfs_features_and_tags_refuse_injection(create: LxcCreate) -> None:
    with pytest.raises(ValueError, match="property string"):
        create.to_params()


def test_well_formed_property_strings_still_render() -> None:
    params = LxcCreate(
        vmid=100,
        ostemplate="local:vztmpl/x.tar.zst",
        rootfs="local-lvm:8",
        networks=[LxcNetwork(name="eth0", bridge="vmbr0", ip6="fd00::5/64", gw6="fd00::1", type="veth")],
        features=LxcFeatures(nesting=True, mount=["nfs", "cifs"]),
        tags=["web", "prod"],
    ).to_params()
    assert params["net0"] == "name=eth0,bridge=vmbr0,ip6=fd00::5/64,gw6=fd00::1,type=veth"
    assert params["features"] == "nesting=1,mount=nfs;cifs"
    assert params["rootfs"] == "local-lvm:8"
    assert params["tags"] == "web;prod"
