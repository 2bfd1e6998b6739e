import msgspec
import pytest

from infrahaus_proxmox import ClusterResource, LxcSummary, NodeStatus, NodeSummary, Storage, TaskStatus
from infrahaus_proxmox.errors import ProxmoxResponseError
from infrahaus_proxmox.parsing import (
    decode_list,
    decode_one,
    lenient_convert,
    parse_disk_size,
    parse_property_string,
    split_tags,
)


def test_node_list_with_odd_values_does_not_crash() -> None:
    raw = [
        {"node": "pve", "status": "online", "cpu": "0.25", "maxcpu": "8", "mem": 1024, "uptime": 12.0},
        {"node": 2, "status": "maintenance", "maxmem": None, "ssl_fingerprint": None, "extra": {"x": 1}},
        {"node": "pve3", "status": "offline", "cpu": "", "uptime": "123.9"},
    ]
    nodes = decode_list(raw, NodeSummary, "node list")
    assert [n.node for n in nodes] == ["pve", "2", "pve3"]
    assert nodes[0].cpu == 0.25
    assert nodes[0].maxcpu == 8
    assert nodes[0].online
    assert nodes[1].status == "maintenance"
    assert not nodes[1].online
    assert nodes[1].maxmem == 0
    assert nodes[2].cpu == 0.0
    assert nodes[2].uptime == 123


def test_booleans_as_numbers_and_strings() -> None:
    raw = [
        {"storage": "local", "active": 1, "enabled": "0", "shared": "true", "content": "vztmpl,iso,backup"},
        {"storage": "zfs", "active": False, "enabled": True, "content": ""},
    ]
    local, zfs = decode_list(raw, Storage, "storage")
    assert local.active is True
    assert local.enabled is False
    assert local.shared is True
    assert local.content == ["vztmpl", "iso", "backup"]
    assert (zfs.active, zfs.enabled, zfs.content) == (False, True, [])


def test_unknown_status_and_entry_without_required_field() -> None:
    raw = [
        {"vmid": "100", "status": "paused", "name": 100, "template": "1", "tags": "a;b"},
        {"status": "running"},  # no vmid: unusable, skipped rather than failing the list
        {"vmid": 101, "status": "running", "maxmem": "536870912"},
    ]
    cts = decode_list(raw, LxcSummary, "container list")
    assert [ct.vmid for ct in cts] == [100, 101]
    assert cts[0].status == "paused"
    assert cts[0].name == "100"
    assert cts[0].template is True
    assert cts[0].tag_list == ["a", "b"]
    assert cts[1].running
    assert cts[1].maxmem == 536870912


def test_nested_structs_are_lenient_too() -> None:
    status = decode_one(
        {
            "cpu": "0.5",
            "uptime": "3600",
            "pveversion": "pve-manager/8.2.4/faa83925c9641325",
            "kversion": "Linux 6.8.8-2-pve",
            "loadavg": ["0.10", 0.2, "0.30"],
            "memory": {"total": "1000", "used": 250, "free": None},
            "rootfs": {"total": 10, "used": "5", "avail": 5.0},
            "boot-info": {"mode": "efi"},
        },
        NodeStatus,
        "node status",
    )
    assert status.cpu == 0.5
    assert status.uptime == 3600
    assert status.loadavg == ["0.10", "0.2", "0.30"]
    assert (status.memory.total, status.memory.used, status.memory.free) == (1000, 250, 0)
    assert (status.rootfs.total, status.rootfs.used, status.rootfs.avail) == (10, 5, 5)


def test_cluster_resources_mixed_types() -> None:
    raw = [
        {"id": "lxc/100", "type": "lxc", "vmid": 100, "node": "pve", "status": "running", "template": 0},
        {"id": "storage/pve/local", "type": "storage", "storage": "local", "status": "available"},
        {"id": "sdn/pve/localnetwork", "type": "sdn", "sdn": "localnetwork"},
        {"id": "openvz/1", "type": "weird-new-type"},
    ]
    resources = decode_list(raw, ClusterResource, "cluster resources")
    assert [r.type for r in resources] == ["lxc", "storage", "sdn", "weird-new-type"]
    assert resources[0].vmid == 100
    assert resources[1].vmid is None


def test_task_status_success_rules() -> None:
    base = {"upid": "UPID:pve:00000001:00000001:00000001:vzstart:100:root@pam:", "status": "stopped"}
    assert decode_one({**base, "exitstatus": "OK"}, TaskStatus, "task").succeeded
    assert decode_one({**base, "exitstatus": "WARNINGS: 2"}, TaskStatus, "task").succeeded
    assert not decode_one({**base, "exitstatus": "command 'lxc-start' failed"}, TaskStatus, "task").succeeded
    running = decode_one({**base, "status": "running"}, TaskStatus, "task")
    assert running.running
    assert not running.succeeded


def test_unusable_single_answer_raises_response_error() -> None:
    with pytest.raises(ProxmoxResponseError, match="task status"):
        decode_one({"status": "stopped"}, TaskStatus, "task status")
    with pytest.raises(ProxmoxResponseError, match="expected a list"):
        decode_list({"node": "pve"}, NodeSummary, "node list")


def test_lenient_convert_keeps_unparseable_numbers_failing() -> None:
    with pytest.raises(msgspec.ValidationError):
        lenient_convert({"vmid": "abc"}, LxcSummary)


def test_property_string_with_default_key() -> None:
    assert parse_property_string("local-lvm:vm-100-disk-0,size=8G", default_key="volume") == {
        "volume": "local-lvm:vm-100-disk-0",
        "size": "8G",
    }
    assert parse_property_string("name=eth0, bridge=vmbr0,,ip=dhcp") == {
        "name": "eth0",
        "bridge": "vmbr0",
        "ip": "dhcp",
    }


@pytest.mark.parametrize(
    ("text", "size"),
    [("8G", 8 * 1024**3), ("512M", 512 * 1024**2), ("1.5T", int(1.5 * 1024**4)), ("100", 100), ("8X", None)],
)
def test_disk_size(text: str, size: int | None) -> None:
    assert parse_disk_size(text) == size


def test_split_tags_accepts_all_separators() -> None:
    assert split_tags("web;prod, eu  db") == ["web", "prod", "eu", "db"]
    assert split_tags(None) == []
