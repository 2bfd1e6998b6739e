import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrahaus_proxmox import ProxmoxClient, TlsPolicy, TokenAuth, Upid, normalize_fingerprint, parse_upid
from infrahaus_proxmox._paths import node_segment, quoted_segment, storage_segment, vmid_segment


@pytest.mark.parametrize("node", ["", "../access", "pve/..", "-pve", "pve-", "pve node", "pve?x=1", "pvé"])
def test_bad_node_names_never_reach_a_url(node: str) -> None:
    with pytest.raises(ValueError, match="invalid node name"):
        node_segment(node)


@pytest.mark.parametrize("vmid", [0, 99, 1_000_000_000, -1, True])
def test_vmid_range(vmid: int) -> None:
    with pytest.raises(ValueError, match="invalid vmid"):
        vmid_segment(vmid)


def test_valid_segments_pass_through() -> None:
    assert node_segment("pve-2") == "pve-2"
    assert storage_segment("local-lvm") == "local-lvm"
    assert vmid_segment(100) == "100"
    with pytest.raises(ValueError, match="invalid storage id"):
        storage_segment("local/../x")
    assert quoted_segment("UPID:pve:0000A1B2:0163A2F1:6553F0A1:x:a/b:root@pam!t:") == (
        "UPID:pve:0000A1B2:0163A2F1:6553F0A1:x:a%2Fb:root@pam!t:"
    )


async def test_resource_calls_validate_before_sending() -> None:
    # Nothing listens on this URL: a validation error must come before any connection attempt.
    client = ProxmoxClient("https://127.0.0.1:9", TokenAuth("root@pam!tk", "s"), tls=TlsPolicy.insecure())
    with pytest.raises(ValueError, match="invalid node name"):
        await client.lxc.list("../../access")
    with pytest.raises(ValueError, match="invalid vmid"):
        await client.lxc.start("pve", 5)
    with pytest.raises(ValueError, match="not a Proxmox UPID"):
        await client.tasks.status("pve", "UPID:../../x")
    await client.aclose()


def test_base_url_forms() -> None:
    auth = TokenAuth("root@pam!tk", "s")
    for url in ("https://pve.example:8006", "https://pve.example:8006/", "https://pve.example:8006/api2/json/"):
        client = ProxmoxClient(url, auth, tls=TlsPolicy.verified())
        assert client.base_url == "https://pve.example:8006"
        assert (client.host, client.port) == ("pve.example", 8006)
    with pytest.raises(ValueError, match="plain http"):
        ProxmoxClient("http://pve.example:8006", auth, tls=TlsPolicy.verified())
    with pytest.raises(ValueError, match="https"):
        ProxmoxClient("pve.example", auth, tls=TlsPolicy.verified())


_names = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_fields = st.from_regex(r"[A-Za-z0-9@!._\-]{1,12}", fullmatch=True)
_u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


@given(node=_names, pid=_u32, pstart=_u32, starttime=_u32, type_=_fields, id_=_fields, user=_fields)
def test_upid_round_trip(node: str, pid: int, pstart: int, starttime: int, type_: str, id_: str, user: str) -> None:
    built = Upid.build(node=node, pid=pid, pstart=pstart, starttime=starttime, type=type_, id=id_, user=user)
    parsed = parse_upid(str(built))
    assert (parsed.node, parsed.pid, parsed.pstart, parsed.starttime) == (node, pid, pstart, starttime)
    assert (parsed.type, parsed.id, parsed.user) == (type_, id_, user)


@given(st.binary(min_size=32, max_size=32), st.sampled_from([":", "", " ", "-"]), st.booleans())
def test_fingerprint_normalisation_is_idempotent(raw: bytes, sep: str, lower: bool) -> None:
    text = sep.join(f"{b:02X}" for b in raw)
    normal = normalize_fingerprint(text.lower() if lower else text)
    assert normal == raw.hex(":").upper()
    assert normalize_fingerprint(normal) == normal
