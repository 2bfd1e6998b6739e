"""Login throttling that is neither bypassable nor a lockout weapon.

- **Who is asking**: `client_address` is the connection's peer, or, when the peer is a trusted proxy
  (`INFRAHAUS_TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not one: a client cannot pick its
  own bucket by sending the header, and clients behind the ingress are not one bucket.
- **Failures only**: wrong credentials count; successful logins, second-factor refusals and unreachable auth
  servers do not.
- **Per client address**: `INFRAHAUS_LOGIN_LIMIT_PER_IP` failures within `INFRAHAUS_LOGIN_LIMIT_WINDOW_SECONDS`
  and that address waits until the window ends (the guesser's address, not the account owner's).
- **Per account, backoff instead of a lockout**: from the `INFRAHAUS_LOGIN_LIMIT_PER_USER`th failure within the
  window on, each failure makes the next attempt on that account wait 1, 2, 4 … seconds, at most
  `INFRAHAUS_LOGIN_BACKOFF_MAX_SECONDS`. Guessing from many addresses is slowed to one try per backoff, and the
  owner is never locked out: they wait that long at most. A success clears the account's state.

A throttled attempt is answered 429 with `Retry-After` before anything is sent to the auth server. State lives in
the shared cache (every API process sees it).
"""

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable
from typing import Any

from litestar import Request

from infrahaus_domain.errors import RateLimited
from infrahaus_domain.ports import Cache
from infrahaus_domain.settings import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: Request[Any, Any, Any], trusted: tuple[IPNetwork, ...]) -> str:
    """The address a request comes from (see the module docstring)."""
    peer = request.client.host if request.client else ""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(peer)
    except ValueError:
        return peer or "unknown"
    if not _inside(address, trusted):
        return str(address)
    hops = [hop.strip() for value in request.headers.getall("x-forwarded-for", []) for hop in value.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            # Only a trusted proxy writes this far right; garbage here is its own fault: count it as the proxy.
            return peer
        if not _inside(address, trusted):
            return str(address)
    return str(address)


def _inside(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def trusted_networks(settings: Settings) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in settings.http.trusted_proxies)


class LoginThrottle:
    """See the module docstring. `check` before verifying credentials; `failed` / `succeeded` after."""

    def __init__(self, cache: Cache, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._cache = cache
        self._window = settings.auth.login_limit_window_seconds
        self._ip_limit = settings.auth.login_limit_per_ip
        self._account_limit = settings.auth.login_limit_per_user
        self._backoff_max = settings.auth.login_backoff_max_seconds
        self._clock = clock

    async def check(self, client: str, account: str) -> None:
        """Raise `RateLimited` while the address is blocked or the account is backing off."""
        now = self._clock()
        waits = [
            await self._until(f"login:blocked:ip:{_key(client)}") - now,
            await self._until(f"login:next:account:{_key(account)}") - now,
        ]
        if (wait := max(waits)) > 0:
            raise RateLimited(math.ceil(wait), "Too many failed logins; try again later.")

    async def failed(self, client: str, account: str) -> None:
        """Count a failed login of `account` from `client`."""
        now = self._clock()
        ip_failures = await self._cache.incr(f"login:failures:ip:{_key(client)}", ttl=self._window)
        if ip_failures >= self._ip_limit:
            remaining = await self._cache.ttl(f"login:failures:ip:{_key(client)}") or self._window
            await self._mark(f"login:blocked:ip:{_key(client)}", now + remaining)
        account_failures = await self._cache.incr(f"login:failures:account:{_key(account)}", ttl=self._window)
        if account_failures >= self._account_limit:
            delay = min(2.0 ** (account_failures - self._account_limit), self._backoff_max)
            await self._mark(f"login:next:account:{_key(account)}", now + delay)

    async def succeeded(self, account: str) -> None:
        """The account's owner got in: its failures and backoff are forgotten (the address's are not)."""
        await self._cache.delete(f"login:failures:account:{_key(account)}", f"login:next:account:{_key(account)}")

    async def _until(self, key: str) -> float:
        raw = await self._cache.get(key)
        try:
            return float(raw) if raw else 0.0
        except ValueError:
            return 0.0

    async def _mark(self, key: str, until: float) -> None:
        await self._cache.set(key, repr(until).encode(), ttl=max(1.0, until - self._clock() + 1))


def _key(value: str) -> str:
    # Usernames and addresses are user input: a fixed-length key whatever they hold.
    return hashlib.sha256(value.lower().encode()).hexdigest()[:32]
