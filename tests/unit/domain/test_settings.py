import base64
from pathlib import Path

import pytest

from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_domain.errors import SettingsError
from infrahaus_domain.settings import Settings

FINGERPRINT = ":".join(["AB"] * 32)


def test_defaults_are_the_embedded_mode() -> None:
    settings = Settings.from_env({})
    assert settings.database.url == "sqlite+aiosqlite:///.infrahaus/infrahaus.db"
    assert settings.redis.url is None
    assert settings.embedded
    assert settings.sessions.idle_seconds == 8 * 3600
    assert settings.sessions.absolute_seconds == 7 * 24 * 3600
    assert settings.sessions.cookie_secure is True
    assert settings.http.cors_origins == ()
    assert settings.auth.configured == ()


def test_full_environment_is_parsed() -> None:
    key = generate_key("k2")
    settings = Settings.from_env(
        {
            "INFRAHAUS_DATABASE_URL": "postgresql+psycopg://u:p@db/infrahaus",
            "INFRAHAUS_REDIS_URL": "redis://cache:6379/1",
            "INFRAHAUS_REDIS_PREFIX": "ih:",
            "INFRAHAUS_ENCRYPTION_KEYS": f"{format_key(key)},{format_key(generate_key('k1'))}",
            "INFRAHAUS_AUTH_SERVERS": '[{"name": "a", "url": "https://pve-a:8006", "fingerprint": "'
            + FINGERPRINT
            + '"},'
            ' {"name": "b", "url": "https://pve-b:8006", "verify": false}]',
            "INFRAHAUS_COOKIE_SECURE": "false",
            "INFRAHAUS_SESSION_IDLE_SECONDS": "600",
            "INFRAHAUS_CORS_ORIGINS": "https://ui.example, https://other.example",
            "INFRAHAUS_LOG_LEVEL": "debug",
            "INFRAHAUS_TEMPLATES_DIR": "/srv/templates",
        }
    )
    assert not settings.embedded
    assert [k.kid for k in settings.encryption.keys] == ["k2", "k1"]
    assert settings.encryption.keys[0].key == key.key
    assert [s.name for s in settings.auth.configured] == ["a", "b"]
    assert settings.auth.server("b") is not None
    assert settings.auth.server("b").verify is False  # type: ignore[union-attr]
    assert settings.auth.server(None) == settings.auth.configured[0]
    assert settings.auth.server("zzz") is None
    assert settings.sessions.cookie_secure is False
    assert settings.sessions.idle_seconds == 600
    assert settings.http.cors_origins == ("https://ui.example", "https://other.example")
    assert settings.logging.level == "DEBUG"
    assert settings.templates_dir == Path("/srv/templates")


def test_single_auth_server_variable() -> None:
    settings = Settings.from_env(
        {"INFRAHAUS_AUTH_PVE_URL": "https://pve:8006", "INFRAHAUS_AUTH_PVE_FINGERPRINT": FINGERPRINT}
    )
    assert len(settings.auth.configured) == 1
    assert settings.auth.configured[0].url == "https://pve:8006"
    assert settings.auth.configured[0].fingerprint == FINGERPRINT


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# active first\n{format_key(generate_key('new'))}\n{format_key(generate_key('old'))}\n")
    settings = Settings.from_env({"INFRAHAUS_ENCRYPTION_KEY_FILE": str(path)})
    assert [k.kid for k in settings.encryption.keys] == ["new", "old"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INFRAHAUS_DATABASE_URL", "mysql://db/x"),
        ("INFRAHAUS_REDIS_URL", "http://cache"),
        ("INFRAHAUS_ENCRYPTION_KEYS", "nokid"),
        ("INFRAHAUS_ENCRYPTION_KEYS", "k1:not-base64!"),
        ("INFRAHAUS_ENCRYPTION_KEYS", "k1:" + base64.b64encode(b"short").decode()),
        ("INFRAHAUS_ENCRYPTION_KEY_FILE", "/nonexistent/infrahaus.key"),
        ("INFRAHAUS_AUTH_SERVERS", "{not json"),
        ("INFRAHAUS_AUTH_SERVERS", '[{"name": "a", "url": "http://plain:8006"}]'),
        ("INFRAHAUS_AUTH_SERVERS", '[{"name": "a", "url": "https://x", "host": "y"}]'),
        ("INFRAHAUS_AUTH_SERVERS", '[{"name": "a", "url": "https://pve:8006", "fingerprint": "AB:CD"}]'),
        ("INFRAHAUS_AUTH_SERVERS", '[{"name": "a", "url": "https://pve:99999"}]'),
        ("INFRAHAUS_AUTH_SERVERS", '[{"name": "a", "url": "https:///nohost"}]'),
        ("INFRAHAUS_AUTH_PVE_URL", "pve.example:8006"),
        ("INFRAHAUS_AUTH_PVE_ACCOUNTS_TOKEN", "root@pam!accounts"),
        ("INFRAHAUS_AUTH_PVE_ACCOUNTS_TOKEN", "root@pam!accounts=01234567,89"),
        ("INFRAHAUS_AUTH_SERVERS", '[{"name": "a", "url": "https://pve:8006", "accounts_token": "x y=z"}]'),
        ("INFRAHAUS_AUTH_REVALIDATE_SECONDS", "0"),
        ("INFRAHAUS_COOKIE_SECURE", "maybe"),
        ("INFRAHAUS_COOKIE_SAMESITE", "loose"),
        ("INFRAHAUS_SESSION_IDLE_SECONDS", "soon"),
        ("INFRAHAUS_SESSION_IDLE_SECONDS", "0"),
        ("INFRAHAUS_WORKER_CONCURRENCY", "-1"),
        ("INFRAHAUS_LOG_LEVEL", "LOUD"),
        ("INFRAHAUS_LOG_FORMAT", "xml"),
        ("INFRAHAUS_SSE_HEARTBEAT_SECONDS", "often"),
        ("INFRAHAUS_SSE_HEARTBEAT_SECONDS", "0"),
        ("INFRAHAUS_SSE_HEARTBEAT_SECONDS", "61"),
        ("INFRAHAUS_SSE_HEARTBEAT_SECONDS", "nan"),
        ("INFRAHAUS_SSE_HEARTBEAT_SECONDS", "inf"),
    ],
)
def test_invalid_values_fail_fast_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({variable: value})
    assert exc.value.variable == variable
    assert str(exc.value).startswith(f"{variable}: ")


def test_cookie_samesite() -> None:
    assert Settings.from_env({}).sessions.cookie_samesite == "lax"
    assert Settings.from_env({"INFRAHAUS_COOKIE_SAMESITE": "Strict"}).sessions.cookie_samesite == "strict"
    settings = Settings.from_env({"INFRAHAUS_COOKIE_SAMESITE": "none", "INFRAHAUS_COOKIE_SECURE": "true"})
    assert settings.sessions.cookie_samesite == "none"
    # Browsers drop a SameSite=None cookie that is not Secure: a cross-site login would "succeed" and then 401.
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({"INFRAHAUS_COOKIE_SAMESITE": "none", "INFRAHAUS_COOKIE_SECURE": "false"})
    assert exc.value.variable == "INFRAHAUS_COOKIE_SAMESITE"


def test_sse_heartbeat_is_read_in_seconds() -> None:
    assert Settings.from_env({}).http.sse_heartbeat_seconds == 15.0
    assert Settings.from_env({"INFRAHAUS_SSE_HEARTBEAT_SECONDS": "2.5"}).http.sse_heartbeat_seconds == 2.5
    assert Settings.from_env({"INFRAHAUS_SSE_HEARTBEAT_SECONDS": "60"}).http.sse_heartbeat_seconds == 60.0


def test_duplicate_key_ids_are_refused() -> None:
    line = format_key(generate_key("same"))
    with pytest.raises(SettingsError, match="appears twice"):
        Settings.from_env({"INFRAHAUS_ENCRYPTION_KEYS": f"{line},{line}"})


def test_absolute_lifetime_must_cover_idle() -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({"INFRAHAUS_SESSION_IDLE_SECONDS": "7200", "INFRAHAUS_SESSION_ABSOLUTE_SECONDS": "3600"})
    assert exc.value.variable == "INFRAHAUS_SESSION_ABSOLUTE_SECONDS"


def test_key_material_is_not_in_the_repr() -> None:
    key = generate_key("k1")
    settings = Settings.from_env({"INFRAHAUS_ENCRYPTION_KEYS": format_key(key)})
    assert base64.b64encode(key.key).decode() not in repr(settings)
    assert "k1" in repr(settings)


def test_passwords_in_urls_are_not_in_the_repr() -> None:
    settings = Settings.from_env(
        {
            "INFRAHAUS_DATABASE_URL": "postgresql+psycopg://app:db-pass-123@db:5432/infrahaus",
            "INFRAHAUS_REDIS_URL": "redis://:redis-pass-456@cache:6379/0",
        }
    )
    text = repr(settings)
    assert "db-pass-123" not in text
    assert "redis-pass-456" not in text
    assert "DatabaseSettings(url='postgresql+psycopg://app:***@db:5432/infrahaus')" in text
    assert "prefix='infrahaus:'" in text
    assert settings.database.url.endswith("db-pass-123@db:5432/infrahaus")


def test_a_bad_single_server_fingerprint_names_its_own_variable() -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({"INFRAHAUS_AUTH_PVE_URL": "https://pve:8006", "INFRAHAUS_AUTH_PVE_FINGERPRINT": "AA:BB"})
    assert exc.value.variable == "INFRAHAUS_AUTH_PVE_FINGERPRINT"


def test_accounts_tokens_are_parsed_and_never_shown() -> None:
    secret = "5f0c7a2e-1b3d-4c5e-8f90-123456789abc"
    single = Settings.from_env(
        {
            "INFRAHAUS_AUTH_PVE_URL": "https://pve.example:8006",
            "INFRAHAUS_AUTH_PVE_ACCOUNTS_TOKEN": f"root@pam!accounts={secret}",
            "INFRAHAUS_AUTH_REVALIDATE_SECONDS": "60",
        }
    )
    server = single.auth.server(None)
    assert server is not None
    assert server.accounts_credentials() == ("root@pam!accounts", secret)
    assert single.auth.revalidate_seconds == 60
    several = Settings.from_env(
        {
            "INFRAHAUS_AUTH_SERVERS": '[{"name": "a", "url": "https://pve-a:8006", "accounts_token": "audit@pve!ih='
            + secret
            + '"}, {"name": "b", "url": "https://pve-b:8006"}]'
        }
    )
    assert [s.accounts_credentials() for s in several.auth.configured] == [("audit@pve!ih", secret), None]
    for shown in (repr(single), repr(single.auth), repr(several), repr(several.auth.configured)):
        assert secret not in shown
        assert "accounts_token" in shown
