"""Process settings: one frozen struct, built once from `INFRAHAUS_*` environment variables.

Nothing here runs at import time; `create_app()`, the worker and the CLI call `Settings.from_env(os.environ)`
and pass the result down. Every invalid value raises `SettingsError` naming the variable.
"""

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from infrahaus_domain.errors import SettingsError

T = TypeVar("T")

_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class EncryptionKey(msgspec.Struct, kw_only=True, frozen=True):
    """One AES-256 key of the keyring; `kid` is written into every ciphertext it produces."""

    kid: str
    key: bytes

    def __repr__(self) -> str:
        return f"EncryptionKey(kid={self.kid!r})"


class AuthServer(msgspec.Struct, kw_only=True, frozen=True):
    """A Proxmox VE endpoint whose `/access/ticket` checks login credentials."""

    name: str
    url: str
    fingerprint: str | None = None
    verify: bool = True


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Everything a process needs to know about its environment."""

    database_url: str
    data_dir: Path = Path(".infrahaus")
    redis_url: str | None = None
    redis_prefix: str = "infrahaus:"
    encryption_keys: tuple[EncryptionKey, ...] = ()
    encryption_key_file: Path | None = None
    auth_servers: tuple[AuthServer, ...] = ()
    cookie_secure: bool = True
    session_idle_seconds: int = 8 * 3600
    session_absolute_seconds: int = 7 * 24 * 3600
    login_limit_per_ip: int = 20
    login_limit_per_user: int = 10
    login_limit_window_seconds: int = 300
    templates_dir: Path | None = None
    worker_concurrency: int = 4
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "json"
    cors_origins: tuple[str, ...] = ()
    max_request_body_bytes: int = 4 * 1024 * 1024
    # Comment lines on idle progress streams keep proxies from closing them.
    sse_heartbeat_seconds: float = 15.0
    # Live container inventory: how long one node may take to answer a list, and how long its answer is reused.
    inventory_node_timeout: float = 2.0
    inventory_cache_seconds: float = 3.0
    # Credential reveals per user and window (429 with Retry-After beyond).
    credentials_reveal_limit: int = 30
    credentials_reveal_window_seconds: int = 60

    def __repr__(self) -> str:
        # Database and Redis URLs may carry passwords; key material is hidden by EncryptionKey's own repr.
        fields = ", ".join(
            f"{name}={_hide_url_password(value) if isinstance(value, str) else value!r}"
            for name, value in msgspec.structs.asdict(self).items()
        )
        return f"Settings({fields})"

    @property
    def embedded(self) -> bool:
        """True without Redis: in-memory cache, locks, event bus and sessions (one process only)."""
        return self.redis_url is None

    def auth_server(self, name: str | None) -> AuthServer | None:
        """The configured auth server called `name`, or the first one when `name` is None."""
        if name is None:
            return self.auth_servers[0] if self.auth_servers else None
        return next((s for s in self.auth_servers if s.name == name), None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        """Build settings from `INFRAHAUS_*` variables; raise `SettingsError` naming the first bad one."""
        env = _Env(environ)
        data_dir = Path(env.get_str("INFRAHAUS_DATA_DIR", ".infrahaus"))
        key_file = env.get_optional("INFRAHAUS_ENCRYPTION_KEY_FILE", Path)
        settings = cls(
            data_dir=data_dir,
            database_url=env.get_str("INFRAHAUS_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'infrahaus.db'}"),
            redis_url=env.get_optional("INFRAHAUS_REDIS_URL", _parse_redis_url),
            redis_prefix=env.get_str("INFRAHAUS_REDIS_PREFIX", "infrahaus:"),
            encryption_keys=_load_keys(environ, key_file),
            encryption_key_file=key_file,
            auth_servers=_load_auth_servers(env),
            cookie_secure=env.get_bool("INFRAHAUS_COOKIE_SECURE", True),
            session_idle_seconds=env.get_int("INFRAHAUS_SESSION_IDLE_SECONDS", 8 * 3600, minimum=60),
            session_absolute_seconds=env.get_int("INFRAHAUS_SESSION_ABSOLUTE_SECONDS", 7 * 24 * 3600, minimum=60),
            login_limit_per_ip=env.get_int("INFRAHAUS_LOGIN_LIMIT_PER_IP", 20, minimum=1),
            login_limit_per_user=env.get_int("INFRAHAUS_LOGIN_LIMIT_PER_USER", 10, minimum=1),
            login_limit_window_seconds=env.get_int("INFRAHAUS_LOGIN_LIMIT_WINDOW_SECONDS", 300, minimum=1),
            templates_dir=env.get_optional("INFRAHAUS_TEMPLATES_DIR", Path) or _repo_templates_dir(),
            worker_concurrency=env.get_int("INFRAHAUS_WORKER_CONCURRENCY", 4, minimum=1),
            log_level=env.get_choice("INFRAHAUS_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),  # type: ignore[arg-type]
            log_format=env.get_choice("INFRAHAUS_LOG_FORMAT", "json", ("json", "text")),  # type: ignore[arg-type]
            cors_origins=tuple(env.get_list("INFRAHAUS_CORS_ORIGINS")),
            max_request_body_bytes=env.get_int("INFRAHAUS_MAX_REQUEST_BODY_BYTES", 4 * 1024 * 1024, minimum=1024),
            # Above a minute, common proxies (nginx's proxy_read_timeout: 60 s) cut idle streams before a heartbeat.
            sse_heartbeat_seconds=env.get_float("INFRAHAUS_SSE_HEARTBEAT_SECONDS", 15.0, minimum=0.1, maximum=60.0),
            inventory_node_timeout=env.get_int("INFRAHAUS_INVENTORY_NODE_TIMEOUT_MS", 2000, minimum=50) / 1000,
            inventory_cache_seconds=env.get_int("INFRAHAUS_INVENTORY_CACHE_MS", 3000) / 1000,
            credentials_reveal_limit=env.get_int("INFRAHAUS_CREDENTIALS_REVEAL_LIMIT", 30, minimum=1),
            credentials_reveal_window_seconds=env.get_int("INFRAHAUS_CREDENTIALS_REVEAL_WINDOW_SECONDS", 60, minimum=1),
        )
        if not settings.database_url.startswith(("postgresql+psycopg://", "sqlite+aiosqlite://")):
            raise SettingsError(
                "INFRAHAUS_DATABASE_URL", "must start with postgresql+psycopg:// or sqlite+aiosqlite://"
            )
        if settings.session_absolute_seconds < settings.session_idle_seconds:
            raise SettingsError("INFRAHAUS_SESSION_ABSOLUTE_SECONDS", "must not be shorter than the idle timeout")
        return settings


_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def _hide_url_password(value: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", value)


def parse_keyring(text: str, variable: str) -> tuple[EncryptionKey, ...]:
    """Parse `kid:base64key` entries separated by commas or newlines; the first is the active key."""
    keys: list[EncryptionKey] = []
    for raw in re.split(r"[,\n]", text):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        kid, sep, encoded = entry.partition(":")
        if not sep or not _KID_RE.match(kid):
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


def _load_keys(environ: Mapping[str, str], key_file: Path | None) -> tuple[EncryptionKey, ...]:
    if text := environ.get("INFRAHAUS_ENCRYPTION_KEYS", "").strip():
        return parse_keyring(text, "INFRAHAUS_ENCRYPTION_KEYS")
    if key_file is None:
        return ()
    try:
        content = key_file.read_text()
    except OSError as exc:
        raise SettingsError("INFRAHAUS_ENCRYPTION_KEY_FILE", f"cannot read {key_file}: {exc.strerror}") from None
    keys = parse_keyring(content, "INFRAHAUS_ENCRYPTION_KEY_FILE")
    if not keys:
        raise SettingsError("INFRAHAUS_ENCRYPTION_KEY_FILE", f"{key_file} holds no key")
    return keys


class _AuthServerInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    url: str
    fingerprint: str | None = None
    verify: bool = True


def _load_auth_servers(env: "_Env") -> tuple[AuthServer, ...]:
    servers: list[AuthServer] = []
    if raw := env.get_raw("INFRAHAUS_AUTH_SERVERS"):
        variable = "INFRAHAUS_AUTH_SERVERS"
        try:
            items = msgspec.json.decode(raw, type=list[_AuthServerInput])
        except (msgspec.DecodeError, json.JSONDecodeError) as exc:
            raise SettingsError(
                variable, f"must be a JSON list of {{name, url, fingerprint?, verify?}}: {exc}"
            ) from None
        servers = [AuthServer(name=i.name, url=i.url, fingerprint=i.fingerprint, verify=i.verify) for i in items]
    elif url := env.get_raw("INFRAHAUS_AUTH_PVE_URL"):
        variable = "INFRAHAUS_AUTH_PVE_URL"
        servers = [
            AuthServer(
                name=env.get_str("INFRAHAUS_AUTH_PVE_NAME", "default"),
                url=url,
                fingerprint=env.get_raw("INFRAHAUS_AUTH_PVE_FINGERPRINT"),
                verify=env.get_bool("INFRAHAUS_AUTH_PVE_VERIFY", True),
            )
        ]
    else:
        return ()
    names: set[str] = set()
    for server in servers:
        if not _NAME_RE.match(server.name) or server.name in names:
            raise SettingsError(variable, f"server name {server.name!r} is invalid or repeated")
        if not server.url.startswith("https://"):
            raise SettingsError(variable, f"server {server.name!r}: the URL must start with https://")
        names.add(server.name)
    return tuple(servers)


def _repo_templates_dir() -> Path | None:
    """The example templates at the root of a source checkout (the default templates directory), if present."""
    candidate = Path(__file__).resolve().parents[4] / "templates"
    return candidate if candidate.is_dir() else None


def _parse_redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return value


class _Env:
    """Typed reads of environment variables; every failure names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get_raw(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def get_str(self, name: str, default: str) -> str:
        return self.get_raw(name) or default

    def get_optional(self, name: str, parse: Callable[[str], T]) -> T | None:
        value = self.get_raw(name)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise SettingsError(name, str(exc)) from None

    def get_int(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.get_raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, f"must be an integer, got {value!r}") from None
        if number < minimum:
            raise SettingsError(name, f"must be at least {minimum}")
        return number

    def get_float(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self.get_raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(name, f"must be a number, got {value!r}") from None
        # NaN compares false both ways, so the range check is written to refuse it too.
        if not minimum <= number <= maximum:
            raise SettingsError(name, f"must be between {minimum:g} and {maximum:g}")
        return number

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.get_raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(name, f"must be true or false, got {value!r}")

    def get_choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get_raw(name)
        if value is None:
            return default
        if value.upper() in choices:
            return value.upper()
        if value.lower() in choices:
            return value.lower()
        raise SettingsError(name, f"must be one of {', '.join(choices)}")

    def get_list(self, name: str) -> list[str]:
        value = self.get_raw(name)
        return [item.strip() for item in value.split(",") if item.strip()] if value else []
