"""No password or token secret in any response, log line or output (beyond the one response that creates a token)."""

from pathlib import Path

import httpx
import pytest

from infrahaus_pvesim import SimNodeConfig, SimulatorConfig
from tests.fixtures.api import assert_no_secrets, login

PASSWORD = "pw-Zq81-7f3e-unique"
WRONG_PASSWORD = "wrong-Kx44-91ab-unique"

pytestmark = pytest.mark.usefixtures("sim_node")


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        auth_failure_delay=0.0,
        data_dir=tmp_path / "pvesim",
        nodes=[SimNodeConfig(name="pve")],
        users={"carol@pve": PASSWORD},
    )


def _dump(response: httpx.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items() if k.lower() != "set-cookie")
    return f"{response.status_code}\n{headers}\n{response.text}"


async def test_no_secret_in_responses_logs_or_output(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("DEBUG")
    seen: list[str] = []
    seen.append(_dump(await client.post("/api/auth/login", json={"username": "carol@pve", "password": WRONG_PASSWORD})))
    seen.append(_dump(await client.post("/api/auth/login", json={"username": "carol@pve", "password": 5})))
    seen.append(
        _dump(await client.post("/api/auth/login", json={"username": "carol", "password": WRONG_PASSWORD, "x": 1}))
    )
    csrf = await login(client, "carol@pve", PASSWORD)
    created = await client.post("/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf})
    token = created.json()["token"]
    token_secret = token.split("_", 2)[2]
    bearer = {"Authorization": f"Bearer {token}"}
    seen.append(_dump(await client.get("/api/auth/tokens", headers=bearer)))
    seen.append(_dump(await client.get("/api/auth/me", headers=bearer)))
    seen.append(_dump(await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}x"})))
    seen.append(_dump(await client.delete(f"/api/auth/tokens/{created.json()['id']}", headers=bearer)))
    seen.append(_dump(await client.get("/api/auth/me", headers=bearer)))

    output = capsys.readouterr()
    assert_no_secrets([PASSWORD, WRONG_PASSWORD, token_secret], *seen, caplog.text, output.out, output.err)
    # The creating response is the one place the token appears.
    assert token_secret in created.text
