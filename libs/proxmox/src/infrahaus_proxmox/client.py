"""ProxmoxClient: one httpx.AsyncClient per node, typed resource APIs hanging off it.

Protocol knowledge (as proxmoxer has it): everything lives under ``/api2/json`` and answers
``{"data": ...}``; write parameters go as form fields, read parameters in the query string,
booleans as 0/1; errors carry their message in the HTTP reason phrase (and, since
libpve-http-server 5.2, in the body's ``message``), 400s add an ``errors`` object per parameter.
595-599 are AnyEvent::HTTP's pseudo statuses that pveproxy passes through when it proxies a request
(to another node, or to pvedaemon on the same node; pve-http-server ``AnyEvent.pm`` ``proxy_request``):
595 = the connection failed, nothing ran (retried like a request that never left); 596/597/599 = the
request may have run (never retried). Every 401 comes after Proxmox's 3 s delay.
"""

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import msgspec

from infrahaus_proxmox.access import AccessApi
from infrahaus_proxmox.cluster import ClusterApi
from infrahaus_proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxConflict,
    ProxmoxConnectTimeout,
    ProxmoxError,
    ProxmoxLocked,
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxProxyError,
    ProxmoxResponseError,
    ProxmoxServerError,
    ProxmoxTimeout,
    ProxmoxTlsError,
    ProxmoxTlsHandshakeError,
    ProxmoxUnreachable,
    ProxmoxValidationError,
    is_lock_message,
)
from infrahaus_proxmox.lxc import LxcApi
from infrahaus_proxmox.models import Ticket, Version
from infrahaus_proxmox.nodes import NodesApi
from infrahaus_proxmox.parsing import decode_one
from infrahaus_proxmox.snapshot import SnapshotApi
from infrahaus_proxmox.storage import StorageApi
from infrahaus_proxmox.tasks import TasksApi
from infrahaus_proxmox.tls import TlsPolicy, fetch_certificate, pinned_ssl_context

logger = logging.getLogger("infrahaus_proxmox")

_TOKEN_ID_RE = re.compile(r"^[^\s:/@]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$")
_WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT"})
# Proxmox tickets live two hours; renew well before, so a long task wait never meets an expired one.
DEFAULT_TICKET_RENEW_AFTER = 90 * 60.0
_MAX_BACKOFF = 2.0

EventHook = Callable[..., Awaitable[None]]
# (host, port) -> the address to connect to; it may refuse by raising (an outbound policy).
Resolver = Callable[[str, int], Awaitable[str]]


class TokenAuth:
    """API token: ``Authorization: PVEAPIToken=<user@realm!name>=<secret>``."""

    def __init__(self, token_id: str, secret: str):
        if not _TOKEN_ID_RE.fullmatch(token_id):
            raise ValueError("token_id must look like 'user@realm!tokenname'")
        if not secret or any(c.isspace() for c in secret):
            raise ValueError("token secret must be a non-empty string without whitespace")
        self.token_id = token_id
        self._secret = secret

    def header(self) -> str:
        return f"PVEAPIToken={self.token_id}={self._secret}"

    def secrets(self) -> tuple[str, ...]:
        return (self._secret,)

    def __repr__(self) -> str:
        return f"TokenAuth(token_id={self.token_id!r}, secret='***')"


class TicketAuth:
    """Username/password login: POST /access/ticket lazily, cookie + CSRF token, renewed in time."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        realm: str | None = None,
        renew_after: float = DEFAULT_TICKET_RENEW_AFTER,
    ):
        self.username = username
        self.realm = realm
        self.renew_after = renew_after
        self._password = password

    @property
    def password(self) -> str:
        return self._password

    def secrets(self) -> tuple[str, ...]:
        return (self._password,)

    def __repr__(self) -> str:
        return f"TicketAuth(username={self.username!r}, password='***')"


def encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Render parameters as Proxmox reads them: strings, booleans 0/1, None left out."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        else:
            raise TypeError(f"parameter {key!r} has unsupported type {type(value).__name__}")
    return out


_NOT_FOUND_RE = re.compile(r"does not exist|\bno such\b|\bnot found\b", re.IGNORECASE)
# Proxy pseudo statuses after which the request may have reached its handler.
_OUTCOME_UNKNOWN = frozenset({596, 597, 598, 599})


def error_for_response(response: httpx.Response, method: str, path: str, secrets: tuple[str, ...] = ()) -> ProxmoxError:
    """Map an error response to the typed exception, keeping Proxmox's reason phrase as the message."""
    status = response.status_code
    body: Any = None
    try:
        body = msgspec.json.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        body = None
    field_errors: dict[str, str] = {}
    if isinstance(body, dict) and isinstance(body.get("errors"), dict):
        field_errors = {str(k): _scrub(str(v), secrets) for k, v in body["errors"].items()}
    reason = response.reason_phrase.strip()
    if not reason and isinstance(body, dict) and isinstance(body.get("message"), str):
        reason = body["message"].strip()
    message = _scrub(reason or f"HTTP {status}", secrets)
    where: dict[str, Any] = {"method": method, "path": path}
    if status == 401:
        return ProxmoxAuthError(message, status=status, **where)
    if status == 403:
        return ProxmoxPermissionError(message, status=status, **where)
    if status == 595:
        return ProxmoxUnreachable(message, status=status, **where)
    if status in _OUTCOME_UNKNOWN:
        return ProxmoxProxyError(message, status=status, **where)
    if status == 400 and field_errors.get("upid") == "no such task":
        # pve-manager Tasks.pm: a well-formed UPID without a task log (another node's, or long gone).
        return ProxmoxNotFound(f"no such task: {message}", status=status, **where)
    if status == 400 and field_errors:
        return ProxmoxValidationError(message, field_errors, **where)
    if is_lock_message(message):
        return ProxmoxLocked(message, status=status, **where)
    if "already exists" in message.lower():
        return ProxmoxConflict(message, status=status, **where)
    if status == 404 or _NOT_FOUND_RE.search(message):
        return ProxmoxNotFound(message, status=status, **where)
    if status == 400:
        return ProxmoxValidationError(message, field_errors, **where)
    return ProxmoxServerError(status, message, **where)


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class _Failure:
    """A transport failure classified for the retry loop."""

    def __init__(self, error: ProxmoxError, *, sent: bool):
        self.error = error
        self.sent = sent  # False: nothing reached the server, safe to retry for any method


def _classify(exc: httpx.TransportError, where: str) -> _Failure:
    if isinstance(exc, httpx.ConnectTimeout):
        return _Failure(ProxmoxConnectTimeout(f"timed out connecting to {where}"), sent=False)
    if isinstance(exc, httpx.ConnectError):
        ssl_error = _ssl_cause(exc)
        if isinstance(ssl_error, ssl.SSLCertVerificationError):
            detail = ssl_error.verify_message or ssl_error.reason or str(ssl_error)
            return _Failure(ProxmoxTlsError(f"TLS verification of {where} failed: {detail}"), sent=True)
        if ssl_error is not None:
            return _Failure(
                ProxmoxTlsHandshakeError(f"TLS handshake with {where} failed: {ssl_error.reason}"), sent=True
            )
        return _Failure(ProxmoxUnreachable(f"cannot connect to {where}: {exc}"), sent=False)
    if isinstance(exc, httpx.PoolTimeout):
        return _Failure(ProxmoxTimeout(f"no free connection to {where} in time"), sent=False)
    if isinstance(exc, httpx.TimeoutException):
        return _Failure(ProxmoxTimeout(f"timed out waiting for {where}"), sent=True)
    return _Failure(ProxmoxUnreachable(f"connection to {where} failed: {type(exc).__name__}"), sent=True)


class ProxmoxClient:
    """Async client for one Proxmox VE node (or a cluster through one node).

    `base_url` is ``https://host:8006`` (``/api2/json`` is added). `auth` is a TokenAuth, a
    TicketAuth, or None (only `access.ticket` and `version`-less probing then work). `tls`
    decides how the certificate is trusted. `timeout` applies to each request; `retries` is how
    many times a GET (or a request that never left) is retried with backoff. `transport`
    replaces the network transport (then `tls` is not applied); `event_hooks` are passed to
    httpx (request/response hooks, e.g. to record requests). `resolver` is asked once, before
    anything is sent, for the address to connect to: the client then connects there (certificate
    probe included) and keeps the host name for SNI, certificate checks and the Host header, so
    the answer cannot change between the caller's check and the connection.
    """

    def __init__(
        self,
        base_url: str,
        auth: TokenAuth | TicketAuth | None,
        *,
        tls: TlsPolicy,
        timeout: float = 10.0,
        retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 0.2,
        event_hooks: Mapping[str, list[EventHook]] | None = None,
        resolver: Resolver | None = None,
    ):
        url = httpx.URL(base_url.rstrip("/"))
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError("base_url must be an absolute https:// URL, e.g. https://pve.example:8006")
        if url.scheme == "http" and transport is None:
            raise ValueError("plain http is only allowed with an explicit transport")
        path = url.path.rstrip("/")
        if path.endswith("/api2/json"):
            path = path[: -len("/api2/json")]
        self.base_url = str(url.copy_with(path=path or "/")).rstrip("/")
        self.host = url.host
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self._auth = auth
        self._tls = tls
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = backoff
        self._transport = transport
        self._event_hooks = {k: list(v) for k, v in (event_hooks or {}).items()}
        self._resolver = resolver
        # The address connections go to, and the SNI name when it is not the URL's host (set with the client).
        self._address: str | None = None
        self._extensions: dict[str, Any] = {}
        self._http: httpx.AsyncClient | None = None
        self._http_lock = asyncio.Lock()
        self._auth_lock = asyncio.Lock()
        self._ticket: Ticket | None = None
        self._ticket_at = 0.0
        self._closed = False

        self.access = AccessApi(self)
        self.nodes = NodesApi(self)
        self.storage = StorageApi(self)
        self.cluster = ClusterApi(self)
        self.lxc = LxcApi(self)
        self.snapshots = SnapshotApi(self)
        self.tasks = TasksApi(self)

    def __repr__(self) -> str:
        return f"ProxmoxClient({self.base_url!r}, auth={self._auth!r}, tls={self._tls.mode!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. The client cannot be used afterwards."""
        self._closed = True
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def version(self) -> Version:
        """GET /version."""
        return decode_one(await self.request("GET", "/version"), Version, "version")

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """Send one API call (path below /api2/json) and return the answer's ``data``."""
        envelope = await self.request_envelope(method, path, params, timeout=timeout)
        return envelope.get("data")

    async def request_envelope(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per-request httpx timeout
        authenticated: bool = True,
    ) -> dict[str, Any]:
        """Like `request` but returns the whole answer object (``data`` plus e.g. ``total``)."""
        response = await self._send(method.upper(), path, encode_params(params), timeout, authenticated)
        try:
            body = msgspec.json.decode(response.content) if response.content else {}
        except msgspec.DecodeError as exc:
            raise ProxmoxResponseError(
                "answer is not JSON", status=response.status_code, method=method, path=path
            ) from exc
        if not isinstance(body, dict):
            raise ProxmoxResponseError(
                "answer is not a JSON object", status=response.status_code, method=method, path=path
            )
        return body

    def _secrets(self) -> tuple[str, ...]:
        found = self._auth.secrets() if self._auth is not None else ()
        if self._ticket is not None:
            found += (self._ticket.ticket, self._ticket.csrf_token)
        return found

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        timeout: float | None,  # noqa: ASYNC109
        authenticated: bool,
    ) -> httpx.Response:
        if self._closed:
            raise ProxmoxError("client is closed")
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        where = f"{self.host}:{self.port}"
        attempt = 0
        renewed = False
        while True:
            used_ticket: Ticket | None = None
            if authenticated and isinstance(self._auth, TicketAuth):
                used_ticket = await self._current_ticket(self._auth)
            headers = self._auth_headers(method, used_ticket) if authenticated else {}
            try:
                http = await self._client()
                response = await http.request(
                    method,
                    path,
                    params=None if method in _BODY_METHODS else params,
                    data=params if method in _BODY_METHODS else None,
                    headers=headers,
                    timeout=httpx.Timeout(timeout if timeout is not None else self._timeout),
                    extensions=self._extensions,
                )
            except (ProxmoxUnreachable, ProxmoxConnectTimeout) as exc:
                # The certificate probe failed before anything was sent.
                failure = _Failure(exc, sent=False)
            except httpx.TransportError as exc:
                failure = _classify(exc, where)
            else:
                logger.debug("%s %s -> %s", method, path, response.status_code)
                if response.status_code < 400:
                    return response
                if response.status_code == 401 and isinstance(self._auth, TicketAuth) and authenticated and not renewed:
                    # The ticket may have expired server-side (restart, clock skew): log in again once.
                    renewed = True
                    if self._ticket is used_ticket:  # not already replaced by a concurrent request
                        self._ticket = None
                    continue
                error = error_for_response(response, method, path, self._secrets())
                # 595: pveproxy could not connect to where it proxies, so nothing ran: any method may retry.
                retry_any = response.status_code == 595
                if (retry_any or (method == "GET" and type(error) is ProxmoxServerError)) and attempt < self._retries:
                    await self._sleep_backoff(attempt)
                    attempt += 1
                    continue
                raise error
            error = failure.error
            error.method, error.path = method, path
            retryable = not isinstance(error, ProxmoxTlsError) and (not failure.sent or method == "GET")
            if retryable and attempt < self._retries:
                logger.debug("%s %s failed (%s), retrying", method, path, type(error).__name__)
                await self._sleep_backoff(attempt)
                attempt += 1
                continue
            raise error

    async def _sleep_backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(self._backoff * 2**attempt, _MAX_BACKOFF))

    def _auth_headers(self, method: str, ticket: Ticket | None) -> dict[str, str]:
        if isinstance(self._auth, TokenAuth):
            return {"Authorization": self._auth.header()}
        if ticket is not None:
            headers = {"Cookie": f"PVEAuthCookie={ticket.ticket}"}
            if method in _WRITE_METHODS:
                headers["CSRFPreventionToken"] = ticket.csrf_token
            return headers
        return {}

    async def _current_ticket(self, auth: TicketAuth) -> Ticket:
        async with self._auth_lock:
            if self._ticket is None or time.monotonic() - self._ticket_at >= auth.renew_after:
                self._ticket = await self.access.ticket(auth.username, auth.password, realm=auth.realm)
                self._ticket_at = time.monotonic()
            return self._ticket

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            async with self._http_lock:
                if self._http is None:
                    self._http = await self._build_http()
        return self._http

    async def _build_http(self) -> httpx.AsyncClient:
        base_url = httpx.URL(self.base_url + "/api2/json")
        headers = {"Accept": "application/json", "User-Agent": "infrahaus-proxmox"}
        if self._resolver is not None:
            self._address = await self._resolver(self.host, self.port)
            if self._address != self.host:
                headers["Host"] = base_url.netloc.decode("ascii")
                base_url = base_url.copy_with(host=self._address)
                if base_url.scheme == "https":
                    self._extensions = {"sni_hostname": self.host}
        common: dict[str, Any] = {
            "base_url": base_url,
            "timeout": httpx.Timeout(self._timeout),
            "headers": headers,
            "event_hooks": self._event_hooks,
            "follow_redirects": False,
            # Proxy and CA settings from the environment must not change whom the token is sent to.
            "trust_env": False,
        }
        if self._transport is not None:
            return httpx.AsyncClient(transport=self._transport, **common)
        return httpx.AsyncClient(verify=await self._verify(), **common)

    async def _verify(self) -> ssl.SSLContext | bool:
        if self._tls.mode == "insecure":
            return False
        if self._tls.mode == "verified":
            return ssl.create_default_context(cadata=self._tls.ca_pem) if self._tls.ca_pem else True
        expected = self._tls.fingerprint
        seen = await fetch_certificate(self.host, self.port, timeout=self._timeout, address=self._address)
        if seen.fingerprint_sha256 != expected:
            raise ProxmoxTlsError(
                f"certificate of {self.host}:{self.port} has fingerprint {seen.fingerprint_sha256}, "
                f"expected the pinned {expected}"
            )
        return pinned_ssl_context(seen.pem)
