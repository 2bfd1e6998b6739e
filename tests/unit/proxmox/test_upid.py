import pytest

from infrahaus_proxmox import Upid, parse_upid

REAL = "UPID:pve:0010A1B2:0163A2F1:6553F0A1:vzcreate:100:root@pam!infrahaus:"


def test_parse_decodes_every_part() -> None:
    upid = parse_upid(REAL)
    assert upid == REAL
    assert isinstance(upid, str)
    assert (upid.node, upid.type, upid.id, upid.user) == ("pve", "vzcreate", "100", "root@pam!infrahaus")
    assert upid.pid == 0x0010A1B2
    assert upid.pstart == 0x0163A2F1
    assert upid.starttime == 0x6553F0A1


def test_build_round_trips() -> None:
    built = Upid.build(node="node-2", pid=42, pstart=7, starttime=1700000000, type="vzstart", id="101", user="root@pam")
    assert built == "UPID:node-2:0000002A:00000007:6553F100:vzstart:101:root@pam:"
    assert parse_upid(built).starttime == 1700000000


def test_nine_digit_pstart_and_empty_id_are_valid() -> None:
    upid = parse_upid("UPID:pve:0000A1B2:1163A2F12:6553F0A1:srvreload:networking:root@pam:")
    assert upid.pstart == 0x1163A2F12
    assert parse_upid("UPID:pve:0000A1B2:0163A2F1:6553F0A1:aptupdate::root@pam:").id == ""


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "UPID:pve:0010A1B2:0163A2F1:6553F0A1:vzcreate:100:root@pam",  # no trailing colon
        "UPID:pve:10A1B2:0163A2F1:6553F0A1:vzcreate:100:root@pam:",  # pid not 8 hex digits
        "UPID:pve:0010A1B2:0163A2F1:6553F0AZ:vzcreate:100:root@pam:",  # starttime not hex
        "UPID:-pve:0010A1B2:0163A2F1:6553F0A1:vzcreate:100:root@pam:",  # bad node name
        "UPID:pve:0010A1B2:0163A2F1:6553F0A1:vz create:100:root@pam:",  # whitespace
        "UPID:pve:0010A1B2:0163A2F1:6553F0A1:vzcreate:100:root@pam:\n",
        "upid:pve:0010A1B2:0163A2F1:6553F0A1:vzcreate:100:root@pam:",
        "OK",
    ],
)
def test_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(ValueError, match="not a Proxmox UPID"):
        parse_upid(garbage)
