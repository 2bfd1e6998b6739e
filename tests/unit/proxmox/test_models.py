import msgspec
import pytest

from infrahaus_proxmox import LxcConfig, LxcCreate, LxcFeatures, LxcNetwork
from infrahaus_pvesim.schema import validate_request


def _config() -> LxcConfig:
    return LxcConfig.from_data(
        {
            "hostname": "web-1",
            "cores": 2,
            "memory": "1024",
            "swap": 512,
            "onboot": 1,
            "unprivileged": True,
            "tags": "prod;web",
            "features": "nesting=1,keyctl=1,mount=nfs;cifs",
            "rootfs": "local-lvm:vm-100-disk-0,size=8G,mountoptions=noatime",
            "net1": "name=eth1,bridge=vmbr1,hwaddr=BC:24:11:00:00:02,ip=dhcp,type=veth",
            "net0": "name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,hwaddr=BC:24:11:00:00:01,ip=10.0.0.5/24,"
            "ip6=fd00::5/64,gw6=fd00::1,tag=20,type=veth",
            "net10": "name=eth10,bridge=vmbr0",
            "lxc": [["lxc.apparmor.profile", "unconfined"]],
            "digest": "0123abcd",
        }
    )


def test_config_scalars() -> None:
    config = _config()
    assert config.digest == "0123abcd"
    assert "digest" not in config.raw
    assert "lxc" not in config.raw
    assert (config.hostname, config.cores, config.memory, config.swap) == ("web-1", 2, 1024, 512)
    assert config.onboot is True
    assert config.unprivileged is True
    assert config.tags == ["prod", "web"]
    assert config.lock is None


def test_config_networks_in_index_order() -> None:
    networks = _config().networks
    assert list(networks) == ["net0", "net1", "net10"]
    net0 = networks["net0"]
    assert (net0.name, net0.bridge, net0.ip, net0.gw, net0.ip6, net0.gw6) == (
        "eth0",
        "vmbr0",
        "10.0.0.5/24",
        "10.0.0.1",
        "fd00::5/64",
        "fd00::1",
    )
    assert net0.hwaddr == "BC:24:11:00:00:01"
    assert net0.tag == 20
    assert net0.firewall is True
    assert networks["net1"].ip == "dhcp"
    assert networks["net1"].firewall is None


def test_config_features_and_rootfs() -> None:
    config = _config()
    assert config.features == LxcFeatures(nesting=True, keyctl=True, mount=["nfs", "cifs"])
    rootfs = config.rootfs
    assert rootfs is not None
    assert (rootfs.storage, rootfs.volume, rootfs.size) == ("local-lvm", "local-lvm:vm-100-disk-0", "8G")
    assert rootfs.size_bytes == 8 * 1024**3
    assert rootfs.options == {"mountoptions": "noatime"}


def test_empty_config_has_safe_defaults() -> None:
    config = LxcConfig.from_data({"digest": "x"})
    assert config.networks == {}
    assert config.rootfs is None
    assert config.features == LxcFeatures()
    assert config.onboot is False
    assert config.tags == []
    assert config.cores is None


def test_network_round_trip() -> None:
    text = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.0.0.5/24,gw=10.0.0.1,tag=20,firewall=1"
    assert LxcNetwork.parse(text).render() == text


def _create() -> LxcCreate:
    return LxcCreate(
        vmid=120,
        ostemplate="local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        rootfs="local-lvm:8",
        hostname="web-1",
        cores=2,
        memory=1024,
        swap=512,
        networks=[
            LxcNetwork(name="eth0", bridge="vmbr0", ip="10.0.0.5/24", gw="10.0.0.1", firewall=True),
            LxcNetwork(name="eth1", bridge="vmbr1", ip="dhcp", ip6="auto"),
        ],
        nameserver="1.1.1.1 9.9.9.9",
        searchdomain="example.org",
        ssh_public_keys="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 a@b\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1 c@d",
        features=LxcFeatures(nesting=True, keyctl=True),
        onboot=True,
        tags=["web", "prod"],
        description="made by infrahaus",
        password="hunter2-secret",
    )


def test_create_renders_proxmox_names() -> None:
    params = _create().to_params()
    assert params == {
        "vmid": "120",
        "ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        "rootfs": "local-lvm:8",
        "unprivileged": "1",
        "start": "0",
        "hostname": "web-1",
        "cores": "2",
        "memory": "1024",
        "swap": "512",
        "nameserver": "1.1.1.1 9.9.9.9",
        "searchdomain": "example.org",
        "ssh-public-keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 a@b\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1 c@d",
        "description": "made by infrahaus",
        "password": "hunter2-secret",
        "net0": "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1,firewall=1",
        "net1": "name=eth1,bridge=vmbr1,ip=dhcp,ip6=auto",
        "features": "nesting=1,keyctl=1",
        "onboot": "1",
        "tags": "web;prod",
    }


def test_create_params_satisfy_the_schema() -> None:
    assert validate_request("POST", "/nodes/pve/lxc", _create().to_params()) == []
    minimal = LxcCreate(vmid=100, ostemplate="local:vztmpl/x.tar.zst", rootfs="local-lvm:4")
    assert validate_request("POST", "/nodes/pve/lxc", minimal.to_params()) == []


def test_create_schema_catches_a_bad_value() -> None:
    params = _create().to_params() | {"cores": "0"}
    assert [v.field for v in validate_request("POST", "/nodes/pve/lxc", params)] == ["cores"]


def test_password_never_in_repr() -> None:
    create = _create()
    assert "hunter2-secret" not in repr(create)
    assert "hunter2-secret" not in str(create)
    assert "hunter2-secret" not in repr([create])
    assert "password='***'" in repr(create)
    assert "hostname='web-1'" in repr(create)


def test_create_is_strict_input() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"vmid": 100, "ostemplate": "x", "rootfs": "y", "bogus": 1}, LxcCreate)
