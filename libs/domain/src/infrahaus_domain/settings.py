"""Process settings: one frozen struct of groups, built once from `INFRAHAUS_*` environment variables.

Each field states its variable, how its text is read and its default in one statement:

    idle_seconds: Annotated[int, Env("INFRAHAUS_SESSION_IDLE_SECONDS", integer(minimum=60))] = 8 * 3600

Nothing here runs at import time; `create_app()`, the worker and the CLI call `Settings.from_env(os.environ)` and
pass the result down (no global, nothing cached). Every invalid value raises `SettingsError` naming the variable.
`Settings.variables()` lists every variable the settings read (the README's configuration reference is checked
against it).
"""

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import msgspec

from infrahaus_domain.errors import SettingsError
from infrahaus_domain.outbound import Rules
from infrahaus_proxmox.tls import normalize_fingerprint

T = TypeVar("T")
G = TypeVar("G", bound=msgspec.Struct)

_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
CookieSameSite = Literal["lax", "strict", "none"]


# ---------------------------------------------------------------- reading one variable


@dataclass(frozen=True)
class Env:
    """The environment variable a field is read from, and how its text becomes the field's value (a parser raising
    `ValueError` with the reason). An unset or blank variable leaves the field at its default."""

    name: str
    parse: Callable[[str], Any]

    def read(self, environ: Mapping[str, str]) -> Any:
        raw = environ.get(self.name, "").strip()
        if not raw:
            return _UNSET
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise SettingsError(self.name, str(exc)) from None


_UNSET = object()


def text(value: str) -> str:
    return value


def path(value: str) -> Path:
    return Path(value)


def integer(*, minimum: int = 0) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be an integer, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        return number

    return parse


def number(*, minimum: float, maximum: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            result = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
        # NaN compares false both ways, so the range check is written to refuse it too.
        if not minimum <= result <= maximum:
            raise ValueError(f"must be between {minimum:g} and {maximum:g}")
        return result

    return parse


def seconds(value: str) -> float:
    """A positive number of seconds (the worker's time limits)."""
    try:
        result = float(value)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not result > 0:
        raise ValueError("must be positive")
    return result


def whole_seconds(value: str) -> int:
    return int(seconds(value))


def milliseconds(*, minimum: int = 0) -> Callable[[str], float]:
    """Milliseconds in the variable, seconds in the field."""
    read = integer(minimum=minimum)
    return lambda value: read(value) / 1000


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        for candidate in (value.upper(), value.lower()):
            if candidate in choices:
                return candidate
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


def comma_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def origin_list(value: str) -> tuple[str, ...]:
    origins = comma_list(value)
    # Session cookies ride on cross-origin requests (credentials are always allowed): a wildcard would let any site
    # call the API as the logged-in user.
    if "*" in origins:
        raise ValueError("'*' is not allowed (the API allows credentials); list the origins")
    for origin in origins:
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?", origin):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
    return origins


def bearer_secret(value: str) -> str:
    if len(value) < 16 or not re.fullmatch(r"[!-~]+", value):
        raise ValueError("must be at least 16 printable characters without spaces")
    return value


def networks(value: str) -> tuple[str, ...]:
    entries = comma_list(value)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r:.80} is not an address or CIDR") from None
    return entries


def outbound_rules(value: str) -> tuple[str, ...]:
    entries = comma_list(value)
    Rules.parse(entries)  # ValueError naming the entry that is neither a CIDR, an address nor a host name
    return entries


def redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return value


def database_url(value: str) -> str:
    if not value.startswith(("postgresql+psycopg://", "sqlite+aiosqlite://")):
        raise ValueError("must start with postgresql+psycopg:// or sqlite+aiosqlite://")
    return value


# ---------------------------------------------------------------- values with a structure


class EncryptionKey(msgspec.Struct, kw_only=True, frozen=True):
    """One AES-256 key of the keyring; `kid` is written into every ciphertext it produces."""

    kid: str
    key: bytes

    def __repr__(self) -> str:
        return f"EncryptionKey(kid={self.kid!r})"


# A Proxmox API token as `user@realm!name=secret` (what `pveum user token add` prints, joined by `=`).
_ACCOUNTS_TOKEN_RE = re.compile(
    r"[A-Za-z0-9._-]{1,64}@[A-Za-z0-9._-]{1,32}![A-Za-z][A-Za-z0-9._-]{0,63}=[A-Za-z0-9-]{8,128}"
)


def accounts_token(value: str) -> str:
    """A Proxmox API token `user@realm!name=secret` (whole-string match)."""
    if not _ACCOUNTS_TOKEN_RE.fullmatch(value):
        raise ValueError("must be a Proxmox API token written user@realm!name=secret")
    return value


class AuthServer(msgspec.Struct, kw_only=True, frozen=True):
    """A Proxmox VE endpoint whose `/access/ticket` checks login credentials."""

    name: str
    url: str
    fingerprint: str | None = None
    verify: bool = True
    # A Proxmox API token (`user@realm!name=secret`, needs only Sys.Audit on /access/groups) with which the worker
    # re-reads the accounts of this server's users (`infrahaus_domain.users.accounts`); None: no re-validation.
    accounts_token: str | None = None

    def __repr__(self) -> str:
        token = "***" if self.accounts_token else None
        return (
            f"AuthServer(name={self.name!r}, url={self.url!r}, fingerprint={self.fingerprint!r}, "
            f"verify={self.verify!r}, accounts_token={token})"
        )

    def accounts_credentials(self) -> tuple[str, str] | None:
        """(token id, secret) of the accounts token, or None."""
        if self.accounts_token is None:
            return None
        token_id, _, secret = self.accounts_token.partition("=")
        return token_id, secret


def parse_keyring(text: str, variable: str) -> tuple[EncryptionKey, ...]:
    """Parse `kid:base64key` entries separated by commas or newlines; the first is the active key."""
    keys: list[EncryptionKey] = []
    for raw in re.split(r"[,\n]", text):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        kid, sep, encoded = entry.partition(":")
        if not sep or not _KID_RE.fullmatch(kid):
            raise SettingsError(variable, "each key must look like <kid>:<base64 of 32 bytes>, kid [A-Za-z0-9_-]")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SettingsError(variable, f"key {kid!r} is not valid base64") from None
        if len(key) != 32:
            raise SettingsError(variable, f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if any(k.kid == kid for k in keys):
            raise SettingsError(variable, f"key id {kid!r} appears twice")
        keys.append(EncryptionKey(kid=kid, key=key))
    return tuple(keys)


def keyring(value: str) -> tuple[EncryptionKey, ...]:
    return parse_keyring(value, "INFRAHAUS_ENCRYPTION_KEYS")


class _AuthServerInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    url: str
    fingerprint: str | None = None
    verify: bool = True
    accounts_token: str | None = None


def auth_servers(value: str) -> tuple[AuthServer, ...]:
    try:
        items = msgspec.json.decode(value, type=list[_AuthServerInput])
    except (msgspec.DecodeError, json.JSONDecodeError):
        # Not the decoder's message: it may quote the value, and the value may hold an accounts token.
        raise ValueError("must be a JSON list of {name, url, fingerprint?, verify?, accounts_token?}") from None
    return tuple(
        AuthServer(
            name=i.name,
            url=i.url,
            fingerprint=i.fingerprint,
            verify=i.verify,
            accounts_token=None if i.accounts_token is None else accounts_token(i.accounts_token),
        )
        for i in items
    )


# ---------------------------------------------------------------- the groups


class DatabaseSettings(msgspec.Struct, kw_only=True, frozen=True):
    # Unset: a SQLite file in the data directory (`Settings.from_env` fills it in).
    url: Annotated[str, Env("INFRAHAUS_DATABASE_URL", database_url)]

    def __repr__(self) -> str:
        return _hide_url_passwords(f"DatabaseSettings({_fields_repr(self)})")


class RedisSettings(msgspec.Struct, kw_only=True, frozen=True):
    # None: the embedded mode (in-memory cache, locks, event bus and sessions; one process only).
    url: Annotated[str | None, Env("INFRAHAUS_REDIS_URL", redis_url)] = None
    prefix: Annotated[str, Env("INFRAHAUS_REDIS_PREFIX", text)] = "infrahaus:"

    def __repr__(self) -> str:
        return _hide_url_passwords(f"RedisSettings({_fields_repr(self)})")


class EncryptionSettings(msgspec.Struct, kw_only=True, frozen=True):
    # The keyring; the first key encrypts, all decrypt. Unset: read from `key_file`.
    keys: Annotated[tuple[EncryptionKey, ...], Env("INFRAHAUS_ENCRYPTION_KEYS", keyring)] = ()
    key_file: Annotated[Path | None, Env("INFRAHAUS_ENCRYPTION_KEY_FILE", path)] = None


class AuthSettings(msgspec.Struct, kw_only=True, frozen=True):
    # Several login endpoints as JSON; without it, the one `pve_*` endpoint (if `pve_url` is set).
    servers: Annotated[tuple[AuthServer, ...], Env("INFRAHAUS_AUTH_SERVERS", auth_servers)] = ()
    pve_url: Annotated[str | None, Env("INFRAHAUS_AUTH_PVE_URL", text)] = None
    pve_name: Annotated[str, Env("INFRAHAUS_AUTH_PVE_NAME", text)] = "default"
    pve_fingerprint: Annotated[str | None, Env("INFRAHAUS_AUTH_PVE_FINGERPRINT", text)] = None
    pve_verify: Annotated[bool, Env("INFRAHAUS_AUTH_PVE_VERIFY", boolean)] = True
    login_limit_per_ip: Annotated[int, Env("INFRAHAUS_LOGIN_LIMIT_PER_IP", integer(minimum=1))] = 20
    login_limit_per_user: Annotated[int, Env("INFRAHAUS_LOGIN_LIMIT_PER_USER", integer(minimum=1))] = 10
    login_limit_window_seconds: Annotated[int, Env("INFRAHAUS_LOGIN_LIMIT_WINDOW_SECONDS", integer(minimum=1))] = 300
    # The longest an account's owner waits between attempts while someone keeps guessing (never a lockout).
    login_backoff_max_seconds: Annotated[int, Env("INFRAHAUS_LOGIN_BACKOFF_MAX_SECONDS", integer(minimum=1))] = 60
    # An API token created without `expires_at` ends after this many days; only an explicit `null` makes one that
    # never expires.
    token_lifetime_days: Annotated[int, Env("INFRAHAUS_TOKEN_DEFAULT_LIFETIME_DAYS", integer(minimum=1))] = 90
    # The accounts token of the one `pve_*` endpoint (see `AuthServer.accounts_token`).
    pve_accounts_token: Annotated[str | None, Env("INFRAHAUS_AUTH_PVE_ACCOUNTS_TOKEN", accounts_token)] = None
    # How often the worker re-reads the Proxmox account of every user with live sessions or tokens; a disabled,
    # expired or deleted account's credentials stop working within this plus the API's 10 s auth cache.
    revalidate_seconds: Annotated[int, Env("INFRAHAUS_AUTH_REVALIDATE_SECONDS", integer(minimum=1))] = 300

    def __repr__(self) -> str:
        shown = {**msgspec.structs.asdict(self), "pve_accounts_token": "***" if self.pve_accounts_token else None}
        return "AuthSettings(" + ", ".join(f"{name}={value!r}" for name, value in shown.items()) + ")"

    @property
    def configured(self) -> tuple[AuthServer, ...]:
        """The login endpoints: `servers`, else the one `pve_*` endpoint, else none."""
        if self.servers or self.pve_url is None:
            return self.servers
        return (
            AuthServer(
                name=self.pve_name,
                url=self.pve_url,
                fingerprint=self.pve_fingerprint,
                verify=self.pve_verify,
                accounts_token=self.pve_accounts_token,
            ),
        )

    def server(self, name: str | None) -> AuthServer | None:
        """The configured auth server called `name`, or the first one when `name` is None."""
        servers = self.configured
        if name is None:
            return servers[0] if servers else None
        return next((s for s in servers if s.name == name), None)


class SessionSettings(msgspec.Struct, kw_only=True, frozen=True):
    cookie_secure: Annotated[bool, Env("INFRAHAUS_COOKIE_SECURE", boolean)] = True
    # `none` lets a page on another site use the cookie session; browsers accept it only with `Secure` (HTTPS).
    cookie_samesite: Annotated[CookieSameSite, Env("INFRAHAUS_COOKIE_SAMESITE", choice(*get_args(CookieSameSite)))] = (
        "lax"
    )

    def check(self) -> "SessionSettings":
        """Refuse combinations a browser would silently drop (raises `SettingsError` naming the variable)."""
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise SettingsError(
                "INFRAHAUS_COOKIE_SAMESITE",
                "`none` needs a Secure cookie (INFRAHAUS_COOKIE_SECURE=true, served over HTTPS): browsers drop "
                "SameSite=None cookies without Secure",
            )
        if self.absolute_seconds < self.idle_seconds:
            raise SettingsError("INFRAHAUS_SESSION_ABSOLUTE_SECONDS", "must not be shorter than the idle timeout")
        return self

    idle_seconds: Annotated[int, Env("INFRAHAUS_SESSION_IDLE_SECONDS", integer(minimum=60))] = 8 * 3600
    absolute_seconds: Annotated[int, Env("INFRAHAUS_SESSION_ABSOLUTE_SECONDS", integer(minimum=60))] = 7 * 24 * 3600


class HttpSettings(msgspec.Struct, kw_only=True, frozen=True):
    # Reverse proxies whose X-Forwarded-For names the client (login throttling keys on it); nobody else's is read.
    trusted_proxies: Annotated[tuple[str, ...], Env("INFRAHAUS_TRUSTED_PROXIES", networks)] = ()
    cors_origins: Annotated[tuple[str, ...], Env("INFRAHAUS_CORS_ORIGINS", origin_list)] = ()
    max_request_body_bytes: Annotated[int, Env("INFRAHAUS_MAX_REQUEST_BODY_BYTES", integer(minimum=1024))] = (
        4 * 1024 * 1024
    )
    # Comment lines on idle progress streams keep proxies from closing them; above a minute, common proxies
    # (nginx's proxy_read_timeout: 60 s) cut idle streams before a heartbeat.
    sse_heartbeat_seconds: Annotated[
        float, Env("INFRAHAUS_SSE_HEARTBEAT_SECONDS", number(minimum=0.1, maximum=60.0))
    ] = 15.0
    # The `retry:` hint every stream starts with: how long a browser waits before it reconnects a dropped stream.
    sse_retry_ms: Annotated[int, Env("INFRAHAUS_SSE_RETRY_MS", integer(minimum=100))] = 2000
    # `/metrics` on the API port: None answers 404 there (serve it on its own port: `infrahaus api --metrics-port`);
    # set, a scraper sends `Authorization: Bearer <token>`.
    metrics_token: Annotated[str | None, Env("INFRAHAUS_METRICS_TOKEN", bearer_secret)] = None
    # The interactive API docs page loads Swagger UI from a CDN without integrity checks: off unless asked for
    # (the OpenAPI document itself is always served).
    docs_page: Annotated[bool, Env("INFRAHAUS_API_DOCS_PAGE", boolean)] = False

    def __repr__(self) -> str:
        shown = {**msgspec.structs.asdict(self), "metrics_token": "***" if self.metrics_token else None}
        return "HttpSettings(" + ", ".join(f"{name}={value!r}" for name, value in shown.items()) + ")"


class OutboundSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where the server may connect to (nodes, probes, login servers, webhooks): `infrahaus_domain.outbound`."""

    # Set: only these CIDRs and host names are reached (an entry inside a refused range, e.g. 127.0.0.1/32, opens
    # that range). Unset: everything but the refused ranges.
    allow: Annotated[tuple[str, ...], Env("INFRAHAUS_OUTBOUND_ALLOW", outbound_rules)] = ()
    deny: Annotated[tuple[str, ...], Env("INFRAHAUS_OUTBOUND_DENY", outbound_rules)] = ()
    # Loopback is reachable: set by `infrahaus dev` (the demo's simulator listens there), never read from the
    # environment (production allows it only through `allow`).
    loopback: bool = False
    # Node probes, registrations, connection tests and endpoint changes per user and window (429 beyond).
    check_limit: Annotated[int, Env("INFRAHAUS_NODE_CHECK_LIMIT", integer(minimum=1))] = 30
    check_window_seconds: Annotated[int, Env("INFRAHAUS_NODE_CHECK_WINDOW_SECONDS", integer(minimum=1))] = 60


class InventorySettings(msgspec.Struct, kw_only=True, frozen=True):
    # How long one node may take to answer the live list, and how long its answer is reused (seconds).
    node_timeout: Annotated[float, Env("INFRAHAUS_INVENTORY_NODE_TIMEOUT_MS", milliseconds(minimum=50))] = 2.0
    cache_seconds: Annotated[float, Env("INFRAHAUS_INVENTORY_CACHE_MS", milliseconds())] = 3.0


class CredentialsSettings(msgspec.Struct, kw_only=True, frozen=True):
    # Credential reveals per user and window (429 with Retry-After beyond).
    reveal_limit: Annotated[int, Env("INFRAHAUS_CREDENTIALS_REVEAL_LIMIT", integer(minimum=1))] = 30
    reveal_window_seconds: Annotated[int, Env("INFRAHAUS_CREDENTIALS_REVEAL_WINDOW_SECONDS", integer(minimum=1))] = 60


class DayTwoSettings(msgspec.Struct, kw_only=True, frozen=True):
    # A drift report's whole computation (node API read and one `pct exec`), and how long its answer is reused.
    drift_timeout: Annotated[float, Env("INFRAHAUS_DRIFT_TIMEOUT", seconds)] = 30.0
    drift_cache_seconds: Annotated[float, Env("INFRAHAUS_DRIFT_CACHE_SECONDS", number(minimum=0, maximum=86400))] = 60.0
    # Keep the snapshot a sync (or a creation's `snapshot_before_scripts`) took once the operation ended.
    keep_snapshots: Annotated[bool, Env("INFRAHAUS_KEEP_AUTOMATIC_SNAPSHOTS", boolean)] = False


class WebhookSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Webhook deliveries (`infrahaus_domain.webhooks`): sent by the worker from the outbox, retried with
    exponential backoff (`backoff_base` * 2^(attempt-1), at most `backoff_max`) up to `max_attempts` attempts."""

    # One attempt: connecting, sending and reading the answer (seconds).
    timeout: Annotated[float, Env("INFRAHAUS_WEBHOOK_TIMEOUT", seconds)] = 10.0
    backoff_base: Annotated[float, Env("INFRAHAUS_WEBHOOK_BACKOFF_BASE", seconds)] = 10.0
    backoff_max: Annotated[float, Env("INFRAHAUS_WEBHOOK_BACKOFF_MAX", seconds)] = 3600.0
    max_attempts: Annotated[int, Env("INFRAHAUS_WEBHOOK_MAX_ATTEMPTS", integer(minimum=1))] = 8
    # How often a worker looks for due deliveries when nothing woke it (a new delivery wakes it at once).
    poll_interval: Annotated[float, Env("INFRAHAUS_WEBHOOK_POLL_INTERVAL", seconds)] = 5.0
    # Deliveries one worker process sends at once.
    concurrency: Annotated[int, Env("INFRAHAUS_WEBHOOK_CONCURRENCY", integer(minimum=1))] = 8


class WorkerTimings(msgspec.Struct, kw_only=True, frozen=True):
    """The worker's time limits and intervals, in seconds."""

    create_task: Annotated[float, Env("INFRAHAUS_WORKER_CREATE_TASK", seconds)] = 600
    start_stop: Annotated[float, Env("INFRAHAUS_WORKER_START_STOP", seconds)] = 120
    shutdown_timeout: Annotated[int, Env("INFRAHAUS_WORKER_SHUTDOWN_TIMEOUT", whole_seconds)] = 60
    script: Annotated[float, Env("INFRAHAUS_WORKER_SCRIPT", seconds)] = 1800
    packages: Annotated[float, Env("INFRAHAUS_WORKER_PACKAGES", seconds)] = 1800
    creation: Annotated[float, Env("INFRAHAUS_WORKER_CREATION", seconds)] = 7200
    lifecycle: Annotated[float, Env("INFRAHAUS_WORKER_LIFECYCLE", seconds)] = 600
    lock_wait: Annotated[float, Env("INFRAHAUS_WORKER_LOCK_WAIT", seconds)] = 120
    ready_wait: Annotated[float, Env("INFRAHAUS_WORKER_READY_WAIT", seconds)] = 120
    # One snapshot task (create, rollback, delete) and a whole sync.
    snapshot: Annotated[float, Env("INFRAHAUS_WORKER_SNAPSHOT", seconds)] = 600
    sync: Annotated[float, Env("INFRAHAUS_WORKER_SYNC", seconds)] = 3600
    # How long a DHCP container may take to get its address (Proxmox shows its eth0 without one until then).
    dhcp_wait: Annotated[float, Env("INFRAHAUS_WORKER_DHCP_WAIT", seconds)] = 60
    heartbeat_interval: Annotated[float, Env("INFRAHAUS_WORKER_HEARTBEAT_INTERVAL", seconds)] = 5
    # A running operation whose heartbeat is older than this lost its worker: the reconciler hands it to another.
    heartbeat_stale: Annotated[float, Env("INFRAHAUS_WORKER_HEARTBEAT_STALE", seconds)] = 60
    # A queued operation older than this whose message never ran is sent again by the reconciler.
    requeue_after: Annotated[float, Env("INFRAHAUS_WORKER_REQUEUE_AFTER", seconds)] = 60
    reconcile_interval: Annotated[float, Env("INFRAHAUS_WORKER_RECONCILE_INTERVAL", seconds)] = 15
    # After this long without a broker heartbeat, a dead worker's unacknowledged messages are redelivered.
    broker_heartbeat: Annotated[float, Env("INFRAHAUS_WORKER_BROKER_HEARTBEAT", seconds)] = 20


class WorkerSettings(msgspec.Struct, kw_only=True, frozen=True):
    concurrency: Annotated[int, Env("INFRAHAUS_WORKER_CONCURRENCY", integer(minimum=1))] = 4
    # Set for its processes by `infrahaus worker` (from --drain-timeout, --metrics-port, --metrics-host).
    drain_timeout: Annotated[float, Env("INFRAHAUS_WORKER_DRAIN_TIMEOUT", number(minimum=0, maximum=86400))] = 90.0
    # Claims of one operation (its first run plus resumes after lost workers) before it fails `worker_lost`.
    max_attempts: Annotated[int, Env("INFRAHAUS_WORKER_MAX_ATTEMPTS", integer(minimum=1))] = 5
    metrics_port: Annotated[int, Env("INFRAHAUS_WORKER_METRICS_PORT", integer())] = 9191
    metrics_host: Annotated[str, Env("INFRAHAUS_WORKER_METRICS_HOST", text)] = "0.0.0.0"  # noqa: S104
    timings: WorkerTimings = WorkerTimings()


class LogSettings(msgspec.Struct, kw_only=True, frozen=True):
    level: Annotated[LogLevel, Env("INFRAHAUS_LOG_LEVEL", choice(*get_args(LogLevel)))] = "INFO"
    format: Annotated[LogFormat, Env("INFRAHAUS_LOG_FORMAT", choice(*get_args(LogFormat)))] = "json"


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Everything a process needs to know about its environment."""

    database: DatabaseSettings
    data_dir: Annotated[Path, Env("INFRAHAUS_DATA_DIR", path)] = Path(".infrahaus")
    # Unset: the example templates of a source checkout, if present (`Settings.from_env` fills it in).
    templates_dir: Annotated[Path | None, Env("INFRAHAUS_TEMPLATES_DIR", path)] = None
    redis: RedisSettings = RedisSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    auth: AuthSettings = AuthSettings()
    sessions: SessionSettings = SessionSettings()
    http: HttpSettings = HttpSettings()
    outbound: OutboundSettings = OutboundSettings()
    inventory: InventorySettings = InventorySettings()
    credentials: CredentialsSettings = CredentialsSettings()
    day_two: DayTwoSettings = DayTwoSettings()
    webhooks: WebhookSettings = WebhookSettings()
    worker: WorkerSettings = WorkerSettings()
    logging: LogSettings = LogSettings()

    def __repr__(self) -> str:
        # Database and Redis URLs may carry passwords; key material is hidden by EncryptionKey's own repr.
        return _hide_url_passwords(f"Settings({_fields_repr(self)})")

    @property
    def embedded(self) -> bool:
        """True without Redis: in-memory cache, locks, event bus and sessions (one process only)."""
        return self.redis.url is None

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed; a group given as a dict changes only those of its fields:
        `settings.replace(redis={"url": None}, templates_dir=None)`."""
        values: dict[str, Any] = {}
        for name, change in changes.items():
            values[name] = (
                msgspec.structs.replace(getattr(self, name), **change) if isinstance(change, dict) else change
            )
        return msgspec.structs.replace(self, **values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        """Build settings from `INFRAHAUS_*` variables; raise `SettingsError` naming the first bad one."""
        data_dir: Path = _read(environ, cls, "data_dir")
        encryption = _load(EncryptionSettings, environ)
        if not encryption.keys and encryption.key_file is not None:
            encryption = msgspec.structs.replace(encryption, keys=_read_key_file(encryption.key_file))
        settings = cls(
            database=_load(DatabaseSettings, environ, url=f"sqlite+aiosqlite:///{data_dir / 'infrahaus.db'}"),
            data_dir=data_dir,
            templates_dir=_read(environ, cls, "templates_dir", default=_repo_templates_dir()),
            redis=_load(RedisSettings, environ),
            encryption=encryption,
            auth=_check_auth(_load(AuthSettings, environ)),
            sessions=_load(SessionSettings, environ).check(),
            http=_load(HttpSettings, environ),
            outbound=_load(OutboundSettings, environ),
            inventory=_load(InventorySettings, environ),
            credentials=_load(CredentialsSettings, environ),
            day_two=_load(DayTwoSettings, environ),
            webhooks=_load(WebhookSettings, environ),
            worker=_load(WorkerSettings, environ, timings=_load(WorkerTimings, environ)),
            logging=_load(LogSettings, environ),
        )
        return settings

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable the settings read, in declaration order."""
        return [env.name for env in _envs(cls)]


# ---------------------------------------------------------------- loading


def variable(group: type[msgspec.Struct], field: str) -> str:
    """The environment variable of `group.field` (for a process that sets it for the processes it starts)."""
    env = _env_of(get_type_hints(group, include_extras=True)[field])
    if env is None:
        raise KeyError(f"{group.__name__}.{field} is not read from the environment")
    return env.name


def _env_of(hint: Any) -> Env | None:
    if get_origin(hint) is Annotated:
        return next((meta for meta in get_args(hint)[1:] if isinstance(meta, Env)), None)
    return None


def _envs(group: type[msgspec.Struct]) -> Iterator[Env]:
    for hint in get_type_hints(group, include_extras=True).values():
        if (env := _env_of(hint)) is not None:
            yield env
        elif isinstance(hint, type) and issubclass(hint, msgspec.Struct):
            yield from _envs(hint)


def _read(environ: Mapping[str, str], group: type[msgspec.Struct], field: str, **override: Any) -> Any:
    """One field of `group` from the environment; unset, the `default` given here, else the field's own."""
    env = _env_of(get_type_hints(group, include_extras=True)[field])
    assert env is not None
    value = env.read(environ)
    if value is not _UNSET:
        return value
    if "default" in override:
        return override["default"]
    return next(f.default for f in msgspec.structs.fields(group) if f.name == field)


def _load(group: type[G], environ: Mapping[str, str], **defaults: Any) -> G:
    """The group from the environment: each variable that is set, else `defaults`, else the field's default."""
    values = dict(defaults)
    for field, hint in get_type_hints(group, include_extras=True).items():
        env = _env_of(hint)
        if env is not None and (value := env.read(environ)) is not _UNSET:
            values[field] = value
    return group(**values)


def _read_key_file(key_file: Path) -> tuple[EncryptionKey, ...]:
    try:
        content = key_file.read_text()
    except OSError as exc:
        raise SettingsError("INFRAHAUS_ENCRYPTION_KEY_FILE", f"cannot read {key_file}: {exc.strerror}") from None
    keys = parse_keyring(content, "INFRAHAUS_ENCRYPTION_KEY_FILE")
    if not keys:
        raise SettingsError("INFRAHAUS_ENCRYPTION_KEY_FILE", f"{key_file} holds no key")
    return keys


def _check_auth(auth: AuthSettings) -> AuthSettings:
    """Every value a login would use is checked here, so a bad one stops the process at start (naming its variable)
    instead of failing each login later."""
    variable = "INFRAHAUS_AUTH_SERVERS" if auth.servers else "INFRAHAUS_AUTH_PVE_URL"
    names: set[str] = set()
    for server in auth.configured:
        if not _NAME_RE.fullmatch(server.name) or server.name in names:
            raise SettingsError(variable, f"server name {server.name!r} is invalid or repeated")
        if not server.url.startswith("https://"):
            raise SettingsError(variable, f"server {server.name!r}: the URL must start with https://")
        try:
            parsed = urlsplit(server.url)
            host, _port = parsed.hostname, parsed.port
        except ValueError as exc:
            raise SettingsError(variable, f"server {server.name!r}: the URL is invalid ({exc})") from None
        if not host:
            raise SettingsError(variable, f"server {server.name!r}: the URL has no host")
        if server.fingerprint is not None:
            try:
                normalize_fingerprint(server.fingerprint)
            except ValueError as exc:
                where = variable if auth.servers else "INFRAHAUS_AUTH_PVE_FINGERPRINT"
                raise SettingsError(where, f"server {server.name!r}: invalid fingerprint: {exc}") from None
        names.add(server.name)
    return auth


def _repo_templates_dir() -> Path | None:
    """The example templates at the root of a source checkout (the default templates directory), if present."""
    candidate = Path(__file__).resolve().parents[4] / "templates"
    return candidate if candidate.is_dir() else None


_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def _hide_url_passwords(value: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", value)


def _fields_repr(struct: msgspec.Struct) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in msgspec.structs.asdict(struct).items())
