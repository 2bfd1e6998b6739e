"""The outbound connection policy: which addresses the server may connect to on a user's or an operator's behalf.

One policy governs every connection to an address someone supplied: Proxmox nodes (API and SSH), certificate
probes, login servers, and webhook deliveries. It is built once per process from `OutboundSettings`
(`INFRAHAUS_OUTBOUND_ALLOW` / `INFRAHAUS_OUTBOUND_DENY`).

- Always refused unless an allow entry names the range itself: loopback (except in `infrahaus dev` / demo mode),
  link-local (169.254.0.0/16, fe80::/10) and the cloud metadata addresses inside and outside it, "this host"
  (0.0.0.0/8, ::), multicast and broadcast. An allow entry that merely contains such a range (`0.0.0.0/0`) does
  not open it.
- `INFRAHAUS_OUTBOUND_DENY` (CIDRs and host names, `*.example.com` for subdomains) is refused always.
- `INFRAHAUS_OUTBOUND_ALLOW`, when set, is an allow-list: only addresses in its CIDRs, or host names it lists,
  are reached. Unset, every address outside the refused ranges is.

`resolve(host, port)` resolves a name once, checks every address it resolves to, and returns the one address to
connect to: callers connect to that address (keeping the name for TLS SNI and the Host header), so a DNS answer
that changes between the check and the connection (rebinding) cannot move the connection elsewhere. A refused
address raises `OutboundDeniedError` before any packet is sent to it.

Entry points: `OutboundPolicy.resolve` for any client that can connect to a given address (the Proxmox client and
the SSH runner take it as their resolver hook, see `infrahaus_domain.nodes.connection`); `OutboundPolicy.transport()`
for plain httpx (webhook deliveries): `httpx.AsyncClient(transport=policy.transport())`.
"""

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from infrahaus_domain.errors import DomainError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses the name resolves to; the system resolver unless a test injects another.
AddressLookup = Callable[[str, int], Awaitable[list[str]]]

LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Refused unless allowed by an entry inside the range itself.
ALWAYS_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this host": connecting to 0.0.0.0 reaches the local machine
        "::/128",
        "169.254.0.0/16",  # link-local, holds 169.254.169.254 (AWS, GCP, Azure, OpenStack metadata)
        "fe80::/10",
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "224.0.0.0/4",  # multicast
        "ff00::/8",
        "255.255.255.255/32",
    )
)
_NAME = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")


class OutboundDeniedError(DomainError):
    """The policy refuses to connect to this address (nothing was sent to it)."""

    code = "outbound_denied"


class UnresolvableHostError(OSError):
    """The name resolves to no address (the message names the host only)."""


@dataclass(frozen=True)
class Rules:
    """Networks and host names of one list (allow or deny)."""

    networks: tuple[IPNetwork, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> "Rules":
        """CIDRs, addresses and host names; ValueError naming the first entry that is none of them."""
        networks: list[IPNetwork] = []
        names: list[str] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _NAME.fullmatch(entry) or len(entry) > 253:
                raise ValueError(f"{entry!r:.80} is neither a CIDR, an address nor a host name")
            names.append(entry.lower().rstrip("."))
        return cls(networks=tuple(networks), names=tuple(names))

    def __bool__(self) -> bool:
        return bool(self.networks or self.names)

    def has_name(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == n or (n.startswith("*.") and host.endswith(n[1:])) for n in self.names)

    def has_address(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


@dataclass(frozen=True)
class OutboundPolicy:
    """See the module docstring. `loopback` opens 127.0.0.0/8 and ::1 (the embedded `dev`/demo mode)."""

    allow: Rules = Rules()
    deny: Rules = Rules()
    loopback: bool = False
    lookup: AddressLookup | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, allow: Iterable[str] = (), deny: Iterable[str] = (), *, loopback: bool = False) -> "OutboundPolicy":
        return cls(allow=Rules.parse(allow), deny=Rules.parse(deny), loopback=loopback)

    def refusal(self, address: IPAddress, *, name: str | None = None) -> str | None:
        """Why `address` (reached as `name`, if a name was given) is refused, or None when it may be reached."""
        address = _plain(address)
        if self.deny.has_address(address):
            return "it is in INFRAHAUS_OUTBOUND_DENY"
        refused = [net for net in self._refused_ranges() if address.version == net.version and address in net]
        if refused and not any(
            address in allowed and any(_inside(allowed, net) for net in refused)
            for allowed in self.allow.networks
            if allowed.version == address.version
        ):
            return "loopback, link-local, metadata and other local addresses are refused"
        if self.allow and not self.allow.has_address(address) and not (name and self.allow.has_name(name)):
            return "it is not in INFRAHAUS_OUTBOUND_ALLOW"
        return None

    def check(self, address: IPAddress, *, host: str, port: int, name: str | None = None) -> None:
        """Raise `OutboundDeniedError` unless `address` may be reached."""
        reason = self.refusal(address, name=name)
        if reason is not None:
            raise OutboundDeniedError(f"Connections to {_display(host)}:{port} are not allowed: {reason}.")

    async def resolve(self, host: str, port: int) -> str:
        """The checked address to connect to for `host:port` (see the module docstring).

        Raises `OutboundDeniedError` (the name or any address it resolves to is refused) or `UnresolvableHostError`.
        """
        bare = host.strip("[]")
        try:
            literal: IPAddress | None = ipaddress.ip_address(bare)
        except ValueError:
            literal = None
        if literal is not None:
            self.check(literal, host=host, port=port)
            return str(_plain(literal))
        if self.deny.has_name(bare):
            raise OutboundDeniedError(
                f"Connections to {_display(host)}:{port} are not allowed: it is in INFRAHAUS_OUTBOUND_DENY."
            )
        found = await (self.lookup or _system_lookup)(bare, port)
        addresses: list[IPAddress] = []
        for text in found:
            try:
                address = _plain(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                continue
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise UnresolvableHostError(f"{_display(host)} does not resolve to an address")
        # Every address is checked: a name must not smuggle a refused address in beside an allowed one.
        for address in addresses:
            self.check(address, host=host, port=port, name=bare)
        return str(addresses[0])

    def transport(self, **options: Any) -> httpx.AsyncBaseTransport:
        """An httpx transport that resolves and checks every request's host and connects to the checked address,
        keeping the name for SNI, certificate checks and the Host header. `options` go to `httpx.AsyncHTTPTransport`
        (e.g. `verify=`, `retries=`)."""
        return _CheckedTransport(self, httpx.AsyncHTTPTransport(**options))

    def _refused_ranges(self) -> tuple[IPNetwork, ...]:
        return ALWAYS_REFUSED if self.loopback else (*LOOPBACK, *ALWAYS_REFUSED)


class _CheckedTransport(httpx.AsyncBaseTransport):
    def __init__(self, policy: OutboundPolicy, inner: httpx.AsyncBaseTransport) -> None:
        self._policy = policy
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = await self._policy.resolve(host, port)
        if address != host:
            # The Host header was set from the original URL when the request was built; SNI follows the name.
            request.url = request.url.copy_with(host=address)
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _system_lookup(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnresolvableHostError(f"{_display(host)} does not resolve to an address") from None
    return [str(info[4][0]) for info in infos]


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inside(inner: IPNetwork, outer: IPNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _display(host: str) -> str:
    return host if len(host) <= 100 else host[:100] + "…"
