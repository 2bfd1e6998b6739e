"""Account re-validation: a user whose Proxmox account was disabled, expired or deleted loses infrahaus access.

infrahaus keeps its own sessions and tokens after a login, so Proxmox alone cannot end them. The worker re-reads
the account of every user with live credentials (a login within the session lifetime, or an unrevoked token) every
`INFRAHAUS_AUTH_REVALIDATE_SECONDS`, with the auth server's accounts token (`AuthServer.accounts_token`, needing
only Sys.Audit on /access/groups). An inactive account gets `users.account_disabled_at`; the API refuses such a
user's tokens and sessions, and the worker publishes `ACCOUNT_TOPIC` so every API process drops what it cached.
A later login (Proxmox let the user in) or a check that finds the account active again lifts the mark.

An auth server that cannot be reached leaves the last known state (logged): infrahaus does not lock everybody
out because Proxmox is down. Without an accounts token there is no re-validation for that server (logged at start).
"""

import time
from dataclasses import dataclass

from infrahaus_domain.outbound import OutboundDeniedError
from infrahaus_domain.settings import AuthServer
from infrahaus_domain.users.service import auth_server_tls
from infrahaus_proxmox.client import Resolver

# Published (key: the user id) when an account is found inactive: caches of sessions and tokens drop everything.
ACCOUNT_TOPIC = "auth.account"


class AccountCheckError(Exception):
    """The auth server could not tell (unreachable, refused by the outbound policy, the accounts token lacks the
    privilege); the message names the kind of failure only, never the token."""


@dataclass(frozen=True)
class AccountState:
    exists: bool
    active: bool


async def read_account(
    server: AuthServer, userid: str, *, resolver: Resolver | None = None, request_timeout: float = 10.0
) -> AccountState:
    """The account `userid` as the auth server sees it now (pve-access-control API2/User.pm read_user)."""
    from infrahaus_proxmox import ProxmoxClient, TokenAuth
    from infrahaus_proxmox.errors import ProxmoxError

    credentials = server.accounts_credentials()
    if credentials is None:
        raise AccountCheckError(f"auth server {server.name} has no accounts token")
    tls = auth_server_tls(server)
    try:
        async with ProxmoxClient(
            server.url, TokenAuth(*credentials), tls=tls, timeout=request_timeout, retries=1, resolver=resolver
        ) as client:
            account = await client.access.user(userid)
    except OutboundDeniedError:
        raise AccountCheckError(f"auth server {server.name} is refused by the outbound policy") from None
    except ProxmoxError as exc:
        raise AccountCheckError(f"auth server {server.name} failed: {type(exc).__name__}") from None
    if account is None:
        return AccountState(exists=False, active=False)
    return AccountState(exists=True, active=account.active(time.time()))
