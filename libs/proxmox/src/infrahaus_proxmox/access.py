"""/access: login tickets, the caller's permissions, and whether an account still exists and is enabled."""

import re
from typing import TYPE_CHECKING, Any

from infrahaus_proxmox._paths import quoted_segment
from infrahaus_proxmox.errors import (
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxResponseError,
    ProxmoxTfaRequired,
)
from infrahaus_proxmox.models import PveUser, Ticket
from infrahaus_proxmox.parsing import parse_bool

if TYPE_CHECKING:
    from infrahaus_proxmox.client import ProxmoxClient


_USERID_RE = re.compile(r"[^\s@/!]{1,60}@[A-Za-z][A-Za-z0-9.\-_]{1,31}")
# pve-access-control AccessControl.pm check_user_exist: die "no such user ('<userid>')".
_NO_SUCH_USER_RE = re.compile(r"\Ano such user\b")


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

    async def permissions(self, path: str | None = None, *, userid: str | None = None) -> dict[str, dict[str, bool]]:
        """GET /access/permissions: the caller's (or `userid`'s, a user or token id) privileges per ACL path, each
        with whether it propagates to sub-paths, e.g. {"/vms": {"VM.Audit": True}}.

        With `path` the answer is the effective set at exactly that path, inherited privileges included; without,
        only the top-level paths and paths that carry an ACL are listed (pve-access-control RPCEnvironment.pm
        get_effective_permissions), so ask per path for a guest, storage or bridge."""
        data = await self._client.request("GET", "/access/permissions", {"path": path, "userid": userid})
        if not isinstance(data, dict):
            raise ProxmoxResponseError("permissions answer is not an object", method="GET", path="/access/permissions")
        return {
            str(acl_path): {str(priv): parse_bool(str(v)) for priv, v in privs.items()}
            for acl_path, privs in data.items()
            if isinstance(privs, dict)
        }

    async def user(self, userid: str) -> PveUser | None:
        """GET /access/users/{userid} (pve-access-control API2/User.pm read_user): the account, or None when
        Proxmox has no such user (deleted).

        The caller needs User.Modify or Sys.Audit on /access/groups, or on a group the user belongs to
        (permission check `userid-group`, RPCEnvironment.pm exec_api2_perm_check). That check looks the user up
        first, so for anyone but root@pam a missing user is a 403 "no such user ('<userid>')"; for root@pam it is
        read_user's own 500 with the same words. A 403 for a missing privilege raises ProxmoxPermissionError.
        """
        if not _USERID_RE.fullmatch(userid):
            raise ValueError(f"invalid userid {userid!r:.80}")
        path = f"/access/users/{quoted_segment(userid)}"
        try:
            data = await self._client.request("GET", path)
        except ProxmoxPermissionError as exc:
            if _NO_SUCH_USER_RE.match(exc.message):
                return None
            raise
        except ProxmoxNotFound as exc:
            if _NO_SUCH_USER_RE.match(exc.message):
                return None
            raise
        if not isinstance(data, dict):
            raise ProxmoxResponseError("user answer is not an object", method="GET", path=path)
        expire = data.get("expire", 0)
        return PveUser(
            enable=parse_bool(str(data.get("enable", "1"))),
            expire=int(expire) if isinstance(expire, int | str) and str(expire).isdigit() else 0,
        )
