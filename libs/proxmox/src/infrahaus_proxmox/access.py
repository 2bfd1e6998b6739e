"""/access: login tickets and the caller's permissions."""

from typing import TYPE_CHECKING, Any

from infrahaus_proxmox.errors import ProxmoxResponseError, ProxmoxTfaRequired
from infrahaus_proxmox.models import Ticket
from infrahaus_proxmox.parsing import parse_bool

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient


class AccessApi:
    def __init__(self, client: "ProxmoxClient"):
        self._client = client

    async def ticket(self, username: str, password: str, realm: str | None = None) -> Ticket:
        """POST /access/ticket: log in with a password (sent without any other credentials).

        Raises ProxmoxAuthError on a wrong password and ProxmoxTfaRequired when Proxmox asks for
        a second factor.
        """
        envelope = await self._client.request_envelope(
            "POST",
            "/access/ticket",
            {"username": username, "password": password, "realm": realm},
            authenticated=False,
        )
        data: Any = envelope.get("data")
        if not isinstance(data, dict):
            raise ProxmoxResponseError("login answer has no data", method="POST", path="/access/ticket")
        ticket = data.get("ticket")
        if parse_bool(str(data.get("NeedTFA", "0"))) or (isinstance(ticket, str) and ticket.startswith("PVE:!tfa!")):
            raise ProxmoxTfaRequired(
                f"second factor required for {username}", status=200, method="POST", path="/access/ticket"
            )
        csrf = data.get("CSRFPreventionToken")
        if not isinstance(ticket, str) or not isinstance(csrf, str):
            raise ProxmoxResponseError("login answer lacks ticket or CSRF token", method="POST", path="/access/ticket")
        return Ticket(username=str(data.get("username", username)), ticket=ticket, csrf_token=csrf)

    async def permissions(self, path: str | None = None) -> dict[str, dict[str, bool]]:
        """GET /access/permissions: the caller's privileges per ACL path, e.g. {"/": {"Sys.Audit": True}}."""
        data = await self._client.request("GET", "/access/permissions", {"path": path})
        if not isinstance(data, dict):
            raise ProxmoxResponseError("permissions answer is not an object", method="GET", path="/access/permissions")
        return {
            str(acl_path): {str(priv): parse_bool(str(v)) for priv, v in privs.items()}
            for acl_path, privs in data.items()
            if isinstance(privs, dict)
        }
