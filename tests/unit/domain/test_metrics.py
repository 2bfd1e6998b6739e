import pytest
from prometheus_client import generate_latest

from infrahaus_domain.metrics import observe_proxmox_call, proxmox_endpoint


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api2/json/nodes/pve/lxc/123/status/start", "/nodes/{node}/lxc/{vmid}/status/start"),
        (
            "/api2/json/nodes/pve-2/tasks/UPID:pve-2:0000ABCD:00012345:6543210F:vzcreate:100:root@pam!x:/status",
            "/nodes/{node}/tasks/{upid}/status",
        ),
        ("/api2/json/nodes/pve/storage/local-lvm/content?content=vztmpl", "/nodes/{node}/storage/{storage}/content"),
        ("/api2/json/cluster/resources", "/cluster/resources"),
        ("/api2/json/version", "/version"),
    ],
)
def test_endpoint_templates(path: str, template: str) -> None:
    assert proxmox_endpoint(path) == template


def test_observed_call_is_exported() -> None:
    observe_proxmox_call("get", "/api2/json/nodes/pve/lxc/101/config", 200, 0.012)
    text = generate_latest().decode()
    assert 'infrahaus_proxmox_request_duration_seconds_count{endpoint="/nodes/{node}/lxc/{vmid}/config",' in text
