"""Authentication and privileges as PVE's access control does them: users with passwords,
tickets (`PVEAuthCookie`) with CSRF tokens, API tokens with optional privilege separation,
ACL paths that propagate to sub-paths, and root@pam-only operations."""

import base64
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from infrahaus_proxmox.simulator.config import ALL_PRIVILEGES, SimulatorConfig

TICKET_LIFETIME = 2 * 3600
ROOT = "root@pam"


class AccessError(Exception):
    """Refused: ``status`` 401 or 403 with PVE's reason phrase."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who a request runs as: ``userid`` (root@pam), and ``tokenid`` (root@pam!infrahaus) for token auth."""

    userid: str
    tokenid: str | None
    kind: str  # "token" | "ticket"
    csrf_token: str | None = None

    @property
    def authid(self) -> str:
        """What PVE logs as the task user: the token id for token auth, else the user."""
        return self.tokenid or self.userid

    @property
    def is_root(self) -> bool:
        # PVE compares the authenticated id with 'root@pam': a token of root is not root.
        return self.tokenid is None and self.userid == ROOT


@dataclass
class _Ticket:
    userid: str
    csrf: str
    issued: float
    tfa_pending: bool


class AccessControl:
    """Users, tickets and tokens shared by all nodes of a simulator."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._tickets: dict[str, _Ticket] = {}

    @staticmethod
    def _userid(username: str, realm: str | None) -> str:
        if realm and "@" not in username:
            return f"{username}@{realm}"
        return username

    def login(
        self, username: str, password: str, realm: str | None = None, tfa_challenge: str | None = None
    ) -> dict[str, object]:
        """POST /access/ticket: a new ticket for a password, a renewed one for a valid ticket, or the full
        ticket for a pending second-factor ticket (``tfa_challenge``) and ``password`` "totp:<code>"."""
        userid = self._userid(username, realm)
        if tfa_challenge is not None:
            return self._second_factor(userid, password, tfa_challenge)
        renewed = self._tickets.get(password)
        ok = renewed is not None and renewed.userid == userid and not renewed.tfa_pending and self._fresh(renewed)
        expected = self._config.users.get(userid)
        if not ok and (expected is None or not hmac.compare_digest(expected.encode(), password.encode())):
            raise AccessError(401, "authentication failure")
        tfa = userid in self._config.tfa_users and renewed is None
        ticket, csrf = self._issue(userid, tfa_pending=tfa)
        data: dict[str, object] = {"username": userid, "ticket": ticket, "CSRFPreventionToken": csrf}
        if tfa:
            data["NeedTFA"] = 1
        else:
            data["cap"] = self._capabilities(userid)
        return data

    def expire_tickets(self) -> None:
        """Make every issued ticket invalid, as if two hours had passed (clients must log in again)."""
        self._tickets.clear()

    def _second_factor(self, userid: str, password: str, challenge: str) -> dict[str, object]:
        pending = self._tickets.get(challenge)
        expected = self._config.tfa_users.get(userid)
        _kind, _, code = password.partition(":")
        if (
            pending is None
            or not pending.tfa_pending
            or pending.userid != userid
            or expected is None
            or not hmac.compare_digest(expected.encode(), code.encode())
        ):
            raise AccessError(401, "authentication failure")
        del self._tickets[challenge]
        ticket, csrf = self._issue(userid, tfa_pending=False)
        return {"username": userid, "ticket": ticket, "CSRFPreventionToken": csrf, "cap": self._capabilities(userid)}

    def _issue(self, userid: str, *, tfa_pending: bool) -> tuple[str, str]:
        now = time.time()
        stamp = f"{int(now):08X}"
        signature = base64.b64encode(secrets.token_bytes(48)).decode()
        marker = f"!tfa!{userid}" if tfa_pending else userid
        ticket = f"PVE:{marker}:{stamp}::{signature}"
        csrf = f"{stamp}:{base64.b64encode(secrets.token_bytes(20)).decode().rstrip('=')}"
        self._tickets[ticket] = _Ticket(userid, csrf, now, tfa_pending)
        return ticket, csrf

    @staticmethod
    def _fresh(ticket: _Ticket) -> bool:
        return time.time() - ticket.issued < TICKET_LIFETIME

    def authenticate(self, authorization: str | None, cookie: str | None, csrf: str | None, method: str) -> Principal:
        """Resolve the credentials of one request; raises AccessError(401) like pveproxy."""
        if authorization and authorization.startswith("PVEAPIToken"):
            return self._token(authorization[len("PVEAPIToken") :].lstrip("= "))
        if cookie:
            ticket = self._tickets.get(cookie)
            if ticket is None or not self._fresh(ticket) or ticket.tfa_pending:
                raise AccessError(401, "permission denied - invalid PVE ticket")
            if method != "GET" and (csrf is None or not hmac.compare_digest(csrf.encode(), ticket.csrf.encode())):
                raise AccessError(401, "Permission denied - invalid csrf token")
            return Principal(ticket.userid, None, "ticket", ticket.csrf)
        raise AccessError(401, "No ticket")

    def _token(self, value: str) -> Principal:
        tokenid, sep, secret = value.partition("=")
        userid, bang, _name = tokenid.partition("!")
        if not sep or not bang or "@" not in userid:
            raise AccessError(401, "invalid token value!")
        token = self._config.tokens.get(tokenid)
        if token is None or token.revoked:
            raise AccessError(401, f"no such token '{_name}' for user '{userid}'")
        if not hmac.compare_digest(token.secret.encode(), secret.encode()):
            raise AccessError(401, "invalid token value!")
        return Principal(userid, tokenid, "token")

    def _acl(self, principal: Principal) -> dict[str, set[str]]:
        if principal.userid == ROOT:
            user_acl: dict[str, set[str]] = {"/": set(ALL_PRIVILEGES)}
        else:
            user_acl = {
                path: set(privs) for path, privs in self._config.user_privileges.get(principal.userid, {}).items()
            }
        if principal.tokenid is None:
            return user_acl
        token = self._config.tokens[principal.tokenid]
        if not token.privsep:
            return user_acl
        # A separated token holds the intersection of its own ACL and its user's.
        return {path: privs & self._effective(user_acl, path) for path, privs in token.privileges.items()}

    @staticmethod
    def _effective(acl: dict[str, set[str]], path: str) -> set[str]:
        result: set[str] = set()
        for acl_path, privs in acl.items():
            if acl_path == "/" or path == acl_path or path.startswith(acl_path.rstrip("/") + "/"):
                result |= privs
        return result

    def privileges(self, principal: Principal, path: str) -> set[str]:
        """The privileges ``principal`` holds on ACL ``path`` (e.g. ``/vms/100``)."""
        return self._effective(self._acl(principal), path)

    def permissions(self, principal: Principal, path: str | None) -> dict[str, dict[str, int]]:
        """GET /access/permissions: ACL path -> {privilege: 1}."""
        if path is not None:
            return {path: dict.fromkeys(sorted(self.privileges(principal, path)), 1)}
        acl = self._acl(principal)
        paths = set(acl) | ({"/access", "/nodes", "/storage", "/vms"} if "/" in acl else set())
        return {p: dict.fromkeys(sorted(self.privileges(principal, p)), 1) for p in sorted(paths)}

    def check(self, principal: Principal, path: str, privs: Iterable[str], *, any_of: bool = False) -> None:
        """Raise PVE's 403 unless ``principal`` holds ``privs`` (all, or any with ``any_of``) on ``path``."""
        held = self.privileges(principal, path)
        wanted = list(privs)
        ok = any(p in held for p in wanted) if any_of else all(p in held for p in wanted)
        if not ok:
            missing = wanted[0] if any_of else next(p for p in wanted if p not in held)
            raise AccessError(403, f"Permission check failed ({path}, {missing})")

    def _capabilities(self, userid: str) -> dict[str, dict[str, int]]:
        principal = Principal(userid, None, "ticket")
        groups = {"vms": "VM.", "storage": "Datastore.", "nodes": "Sys.", "access": "User.", "dc": "SDN."}
        return {
            group: {p: 1 for p in sorted(self.privileges(principal, "/")) if p.startswith(prefix)}
            for group, prefix in groups.items()
        }
