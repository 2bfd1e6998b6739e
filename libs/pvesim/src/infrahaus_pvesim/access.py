"""Authentication and privileges as PVE's access control does them.

Users with passwords, tickets (`PVEAuthCookie`) with CSRF tokens, API tokens with optional privilege separation,
roles (PVE 8's built-in ones plus configured ones) and ACLs on paths:

- pve-access-control ``src/PVE/AccessControl.pm`` sub ``roles``: the path is walked from ``/`` down; at each level an
  ACL for the token, else for the user, else for the user's groups *replaces* what was inherited; a role applies to
  deeper paths only when its ACL propagates, always on its own path; ``NoAccess`` wins over everything.
- ``src/PVE/RPCEnvironment.pm`` sub ``permissions``: root@pam holds every privilege; a token without privilege
  separation holds its user's; a separated token holds the intersection of its own and its user's, the propagate
  flag being the AND of both. ``get_effective_permissions`` lists the default top-level paths and every ACL path.
- ``check`` / ``check_any`` raise ``Permission check failed (<path>, <priv>)`` (``<a>|<b>`` for any-of).
"""

import base64
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from infrahaus_pvesim.config import ALL_PRIVILEGES, BUILTIN_ROLES, SimAcl, SimulatorConfig

TICKET_LIFETIME = 2 * 3600
ROOT = "root@pam"
# pveproxy's answer to any bad token or ticket (the detail only goes to syslog): pve-manager PVE/HTTPServer.pm
# sub auth_handler.
AUTH_FAILED = "Authentication failed!"
# GET /access/permissions without `path` lists these and every ACL path (RPCEnvironment get_effective_permissions).
_DEFAULT_PATHS = ("/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms")


class AccessError(Exception):
    """Refused: ``status`` 401 or 403 with PVE's reason phrase (400 with ``errors`` for a parameter)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


@dataclass(frozen=True)
class Principal:
    """Who a request runs as: ``userid`` (root@pam), and ``tokenid`` (root@pam!infrahaus) for token auth."""

    userid: str
    tokenid: str | None
    kind: str  # "token" | "ticket"
    csrf_token: str | None = None

    @property
    def authid(self) -> str:
        """What PVE logs as the task user and checks privileges for: the token id for token auth, else the user."""
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


def _levels(path: str) -> list[str]:
    """``/vms/100`` -> ``["/", "/vms", "/vms/100"]``."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _norm(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


class AccessControl:
    """Users, tickets, tokens, roles and ACLs shared by all nodes of a simulator (read live from the config, so a
    test may change ACLs or tokens while the simulator runs)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._tickets: dict[str, _Ticket] = {}

    # ------------------------------------------------------------------ login and authentication

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
            # pve-access-control API2/AccessControl.pm create_ticket: one answer for every failure.
            raise AccessError(401, "authentication failure")
        if not self.user_enabled(userid):
            # AccessControl.pm authenticate_user calls check_user_enabled ("user account disabled", "account
            # expired"); create_ticket answers that like a wrong password too.
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
        """Resolve the credentials of one request; raises AccessError(401) like pveproxy's auth_handler."""
        if authorization and authorization.startswith("PVEAPIToken"):
            return self._token(authorization[len("PVEAPIToken") :].lstrip("= "))
        if not cookie:
            raise AccessError(401, "No ticket")
        ticket = self._tickets.get(cookie)
        if ticket is None or not self._fresh(ticket):
            raise AccessError(401, AUTH_FAILED)
        if ticket.tfa_pending:
            # A half-done second-factor login only reaches /access/tfa.
            raise AccessError(401, "No ticket")
        if method != "GET" and (csrf is None or not hmac.compare_digest(csrf.encode(), ticket.csrf.encode())):
            raise AccessError(401, "Permission denied - invalid csrf token")
        return Principal(ticket.userid, None, "ticket", ticket.csrf)

    def _token(self, value: str) -> Principal:
        # PVEAPIToken=<user@realm!name>=<secret>: the secret follows the last '='.
        tokenid, sep, secret = value.rpartition("=")
        userid, bang, _name = tokenid.partition("!")
        if not sep or not bang or "@" not in userid:
            raise AccessError(401, AUTH_FAILED)
        token = self._config.tokens.get(tokenid)
        if token is None or token.revoked or userid not in self._known_users():
            raise AccessError(401, AUTH_FAILED)
        if not hmac.compare_digest(token.secret.encode(), secret.encode()):
            raise AccessError(401, AUTH_FAILED)
        if not self.user_enabled(userid):
            # AccessControl.pm verify_token: check_user_enabled on the token's user first.
            raise AccessError(401, AUTH_FAILED)
        return Principal(userid, tokenid, "token")

    def _known_users(self) -> set[str]:
        return {ROOT, *self._config.users, *(t.partition("!")[0] for t in self._config.tokens)}

    # ------------------------------------------------------------------ user accounts (user.cfg)

    def user_enabled(self, userid: str, now: float | None = None) -> bool:
        """AccessControl.pm check_user_enabled: the user exists, `enable` is 1 and `expire` (if set) is ahead."""
        if userid not in self._known_users() or userid in self._config.disabled_users:
            return False
        expire = self._config.user_expire.get(userid, 0)
        return not expire or expire >= (time.time() if now is None else now)

    def set_user_enabled(self, userid: str, enabled: bool) -> None:
        """`pveum user modify <userid> --enable 0|1` (API2/User.pm update_user)."""
        if enabled:
            self._config.disabled_users.discard(userid)
        else:
            self._config.disabled_users.add(userid)

    def delete_user(self, userid: str) -> None:
        """`pveum user delete <userid>` (API2/User.pm delete_user): the account with its tokens, group memberships,
        ACLs and second factor."""
        self._config.users.pop(userid, None)
        self._config.disabled_users.discard(userid)
        self._config.user_expire.pop(userid, None)
        self._config.tfa_users.pop(userid, None)
        self._config.user_privileges.pop(userid, None)
        for tokenid in [t for t in self._config.tokens if t.partition("!")[0] == userid]:
            del self._config.tokens[tokenid]
        for members in self._config.groups.values():
            members.discard(userid)
        self._config.acls = [
            SimAcl(a.path, a.roles, tuple(u for u in a.users if u != userid), a.tokens, a.groups, a.propagate)
            for a in self._config.acls
        ]

    def read_user(self, principal: Principal, userid: str) -> dict[str, object]:
        """GET /access/users/{userid} (API2/User.pm read_user), with the permission check pve-http-server runs first
        (RPCEnvironment.pm exec_api2_perm_check, test `userid-group` with User.Modify or Sys.Audit).

        That check looks the user up before any privilege and dies "no such user ('<userid>')", which the HTTP
        server answers 403 like any failed permission check (pve-http-server AnyEvent.pm handle_api2_request).
        Only root@pam skips the check (check_api2_permissions); its request reaches read_user's own
        check_user_exist, whose die is a 500 with the same message."""
        known = userid in self._known_users()
        privs = ("User.Modify", "Sys.Audit")
        if not principal.is_root:
            if not known:
                raise AccessError(403, f"no such user ('{userid}')")
            if not self.can(principal, "/access/groups", privs):
                groups = [g for g, members in self._config.groups.items() if userid in members]
                if not any(self.can(principal, f"/access/groups/{g}", privs) for g in groups):
                    raise AccessError(403, "Permission check failed")
        if not known:
            raise AccessError(500, f"no such user ('{userid}')")
        tokens = {
            tokenid.partition("!")[2]: {"privsep": int(token.privsep), "expire": 0}
            for tokenid, token in self._config.tokens.items()
            if tokenid.partition("!")[0] == userid and not token.revoked
        }
        return {
            "enable": 0 if userid in self._config.disabled_users else 1,
            "expire": self._config.user_expire.get(userid, 0),
            "groups": sorted(g for g, members in self._config.groups.items() if userid in members),
            "tokens": tokens,
        }

    # ------------------------------------------------------------------ roles and privileges

    def _roles_table(self) -> dict[str, frozenset[str]]:
        return {**BUILTIN_ROLES, **self._config.roles}

    def _acls(self) -> list[SimAcl]:
        """The configured ACLs plus the shorthand ones (each path -> privileges its own propagating role)."""
        acls = list(self._config.acls)
        for tokenid, token in self._config.tokens.items():
            for path, _privs in token.privileges.items():
                acls.append(SimAcl(_norm(path), (f"token:{tokenid}:{_norm(path)}",), tokens=(tokenid,)))
        for userid, paths in self._config.user_privileges.items():
            for path in paths:
                acls.append(SimAcl(_norm(path), (f"user:{userid}:{_norm(path)}",), users=(userid,)))
        return acls

    def _shorthand_role(self, role: str) -> frozenset[str] | None:
        kind, _, rest = role.partition(":")
        if kind == "token":
            tokenid, _, path = rest.rpartition(":")
            token = self._config.tokens.get(tokenid)
            if token is not None:
                return frozenset(next((p for k, p in token.privileges.items() if _norm(k) == path), set()))
        elif kind == "user":
            userid, _, path = rest.rpartition(":")
            paths = self._config.user_privileges.get(userid, {})
            return frozenset(next((p for k, p in paths.items() if _norm(k) == path), set()))
        return None

    def _roles(self, authid: str, path: str) -> dict[str, bool]:
        """AccessControl.pm sub roles: the roles (-> propagate flag) of a user or token on ``path``."""
        is_token = "!" in authid
        groups = [] if is_token else [g for g, members in self._config.groups.items() if authid in members]
        by_path: dict[str, list[SimAcl]] = {}
        for acl in self._acls():
            by_path.setdefault(_norm(acl.path), []).append(acl)
        roles: dict[str, bool] = {}
        levels = _levels(path)
        for index, level in enumerate(levels):
            final = index == len(levels) - 1
            entries = by_path.get(level, [])
            # A token's own ACLs; for a user, the user's ACLs, else its groups'.
            subjects: list[list[SimAcl]] = (
                [[a for a in entries if authid in a.tokens]]
                if is_token
                else [[a for a in entries if authid in a.users], [a for a in entries if set(a.groups) & set(groups)]]
            )
            for matching in subjects:
                new = {role: acl.propagate for acl in matching for role in acl.roles if final or acl.propagate}
                if new:
                    roles = new
                    break
        if "NoAccess" in roles:
            return {"NoAccess": roles["NoAccess"]}
        return roles

    def _privs_of(self, authid: str, path: str) -> dict[str, bool]:
        table = self._roles_table()
        privs: dict[str, bool] = {}
        for role, propagate in self._roles(authid, path).items():
            members = table.get(role)
            if members is None:
                members = self._shorthand_role(role) or frozenset()
            for priv in members:
                privs[priv] = privs.get(priv, False) or propagate
        return privs

    def privilege_flags(self, authid: str, path: str) -> dict[str, bool]:
        """RPCEnvironment.pm sub permissions: privilege -> propagates, for a user or token id on ``path``."""
        path = _norm(path)
        if authid == ROOT:
            return dict.fromkeys(ALL_PRIVILEGES, True)
        userid, bang, _name = authid.partition("!")
        if bang:
            token = self._config.tokens.get(authid)
            if token is None or token.revoked:
                return {}
            owner = self.privilege_flags(userid, path)
            if not token.privsep:
                return owner
            own = self._privs_of(authid, path)
            return {priv: flag and owner[priv] for priv, flag in own.items() if priv in owner}
        if userid not in self._known_users():
            return {}
        return self._privs_of(userid, path)

    def privileges(self, principal: Principal, path: str) -> set[str]:
        """The privileges ``principal`` holds on ACL ``path`` (e.g. ``/vms/100``)."""
        return set(self.privilege_flags(principal.authid, path))

    def permissions(self, principal: Principal, path: str | None, userid: str | None = None) -> dict[str, object]:
        """GET /access/permissions (pve-access-control API2/AccessControl.pm sub permissions): the effective
        privileges (-> propagate flag 0/1) of the caller, or of ``userid`` (a user or token id), at ``path`` or on
        the default and ACL paths. Others than oneself and one's own tokens need Sys.Audit on /access."""
        target = userid if userid is not None else principal.authid
        owner = target.partition("!")[0]
        if target != principal.authid and not (principal.tokenid is None and owner == principal.userid):
            self.check(principal, "/access", ["Sys.Audit"])
        if path is not None:
            flags = self.privilege_flags(target, path)
            return {path: {priv: int(flag) for priv, flag in sorted(flags.items())}}
        paths = set(_DEFAULT_PATHS) | {_norm(acl.path) for acl in self._acls()}
        result: dict[str, object] = {}
        for each in sorted(paths):
            flags = self.privilege_flags(target, each)
            if flags:
                result[each] = {priv: int(flag) for priv, flag in sorted(flags.items())}
        return result

    def check(self, principal: Principal, path: str, privs: Iterable[str], *, any_of: bool = False) -> None:
        """Raise PVE's 403 unless ``principal`` holds ``privs`` (all, or any with ``any_of``) on ``path``."""
        held = self.privileges(principal, path)
        wanted = list(privs)
        if any_of:
            if not any(p in held for p in wanted):
                raise AccessError(403, f"Permission check failed ({path}, {'|'.join(wanted)})")
            return
        for priv in wanted:
            if priv not in held:
                raise AccessError(403, f"Permission check failed ({path}, {priv})")

    def can(self, principal: Principal, path: str, privs: Iterable[str]) -> bool:
        """Whether ``principal`` holds any of ``privs`` on ``path`` (RPCEnvironment check_any with noerr)."""
        held = self.privileges(principal, path)
        return any(p in held for p in privs)

    def acl_paths_below(self, path: str) -> list[str]:
        """ACL paths strictly below ``path`` (for PVE's bridge check, which also accepts a VLAN child's ACL)."""
        prefix = _norm(path).rstrip("/") + "/"
        return sorted({_norm(acl.path) for acl in self._acls() if _norm(acl.path).startswith(prefix)})

    def _capabilities(self, userid: str) -> dict[str, dict[str, int]]:
        groups = {"vms": "VM.", "storage": "Datastore.", "nodes": "Sys.", "access": "User.", "dc": "SDN."}
        held = self.privilege_flags(userid, "/")
        return {group: {p: 1 for p in sorted(held) if p.startswith(prefix)} for group, prefix in groups.items()}
