import httpx
import pytest

from infrahaus_proxmox import (
    ProxmoxAuthError,
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxLocked,
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxProxyError,
    ProxmoxServerError,
    ProxmoxUnreachable,
    ProxmoxValidationError,
    TicketAuth,
    TokenAuth,
)
from infrahaus_proxmox.client import encode_params, error_for_response


def _response(status: int, reason: str, body: bytes = b'{"data":null}') -> httpx.Response:
    return httpx.Response(status, content=body, extensions={"reason_phrase": reason.encode()})


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (401, "authentication failure", ProxmoxAuthError),
        (403, "Permission check failed (/vms/100, VM.PowerMgmt)", ProxmoxPermissionError),
        (595, "Errors during connection establishment, proxy handshake: Connection refused", ProxmoxUnreachable),
        (596, "Connection timed out", ProxmoxProxyError),
        (500, "CT is locked (create)", ProxmoxLocked),
        (500, "can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout", ProxmoxLocked),
        (500, "CT 100 already exists", ProxmoxConflict),
        (500, "Configuration file 'nodes/pve/lxc/100.conf' does not exist", ProxmoxNotFound),
        (404, "Not Found", ProxmoxNotFound),
        (500, "Internal Server Error", ProxmoxServerError),
        (503, "Service Unavailable", ProxmoxServerError),
    ],
)
def test_status_and_reason_map_to_types(status: int, reason: str, kind: type[ProxmoxError]) -> None:
    error = error_for_response(_response(status, reason), "POST", "/nodes/pve/lxc/100/status/start")
    assert type(error) is kind
    assert error.message == reason
    assert error.status == status
    assert reason in str(error)
    assert "POST /nodes/pve/lxc/100/status/start" in str(error)


def test_validation_errors_per_field() -> None:
    body = b'{"data":null,"errors":{"cores":"value must have a minimum value of 1","vmid":"VM 100 already exists"}}'
    error = error_for_response(_response(400, "Parameter verification failed."), "POST", "/nodes/pve/lxc")
    assert isinstance(error, ProxmoxValidationError)
    assert error.errors == {}
    error = error_for_response(_response(400, "Parameter verification failed.", body), "POST", "/nodes/pve/lxc")
    assert isinstance(error, ProxmoxValidationError)
    assert error.errors == {"cores": "value must have a minimum value of 1", "vmid": "VM 100 already exists"}


def test_secrets_are_scrubbed_from_messages() -> None:
    body = b'{"data":null,"errors":{"password":"bad value s3cret-pass"}}'
    error = error_for_response(_response(400, "echo s3cret-pass", body), "POST", "/access/ticket", ("s3cret-pass",))
    assert isinstance(error, ProxmoxValidationError)
    assert "s3cret-pass" not in str(error)
    assert "s3cret-pass" not in repr(error.errors)


def test_auth_objects_hide_secrets() -> None:
    token = TokenAuth("root@pam!infrahaus", "0b1d2c3e-secret")
    assert "0b1d2c3e-secret" not in repr(token)
    assert token.header() == "PVEAPIToken=root@pam!infrahaus=0b1d2c3e-secret"
    assert "pw-secret" not in repr(TicketAuth("root@pam", "pw-secret"))
    with pytest.raises(ValueError, match="token_id"):
        TokenAuth("root@pam", "x")


def test_encode_params_booleans_and_none() -> None:
    assert encode_params({"purge": True, "force": False, "timeout": 30, "x": None, "s": "a b"}) == {
        "purge": "1",
        "force": "0",
        "timeout": "30",
        "s": "a b",
    }
    with pytest.raises(TypeError, match="unsupported type"):
        encode_params({"bad": ["a"]})
