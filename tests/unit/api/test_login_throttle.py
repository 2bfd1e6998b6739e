"""Login throttling's arithmetic with a clock of its own: the account backoff doubles up to its ceiling and a
success clears it; an address is blocked for the rest of its window."""

import pytest

from infrahaus_api.login_limit import LoginThrottle
from infrahaus_domain.errors import RateLimited, SettingsError
from infrahaus_domain.ports.memory import MemoryCache
from infrahaus_domain.settings import DatabaseSettings, Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **auth: int) -> LoginThrottle:
    settings = Settings(database=DatabaseSettings(url="sqlite+aiosqlite://")).replace(auth=auth)
    return LoginThrottle(MemoryCache(), settings, clock=clock)


async def waits(limiter: LoginThrottle, client: str, account: str) -> int:
    try:
        await limiter.check(client, account)
    except RateLimited as exc:
        return exc.retry_after
    return 0


async def test_the_account_backoff_doubles_up_to_its_ceiling_and_a_success_clears_it() -> None:
    clock = Clock()
    limiter = throttle(clock, login_limit_per_user=3, login_limit_per_ip=1000, login_backoff_max_seconds=8)
    seen = []
    for n in range(7):
        assert await waits(limiter, f"198.51.100.{n}", "root@pam") == 0
        await limiter.failed(f"198.51.100.{n}", "root@pam")
        seen.append(await waits(limiter, "192.0.2.1", "ROOT@pam"))  # any address, any spelling
        clock.now += seen[-1]
    assert seen == [0, 0, 1, 2, 4, 8, 8]
    assert await waits(limiter, "192.0.2.1", "other@pve") == 0
    await limiter.succeeded("root@pam")
    await limiter.failed("192.0.2.1", "root@pam")
    assert await waits(limiter, "192.0.2.1", "root@pam") == 0


async def test_an_address_is_blocked_for_the_rest_of_its_window() -> None:
    clock = Clock()
    limiter = throttle(clock, login_limit_per_ip=2, login_limit_per_user=1000, login_limit_window_seconds=120)
    await limiter.failed("203.0.113.7", "a@pve")
    assert await waits(limiter, "203.0.113.7", "b@pve") == 0
    await limiter.failed("203.0.113.7", "b@pve")
    assert 100 <= await waits(limiter, "203.0.113.7", "c@pve") <= 121
    assert await waits(limiter, "203.0.113.8", "c@pve") == 0
    clock.now += 121
    assert await waits(limiter, "203.0.113.7", "c@pve") == 0


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-an-address", "10.0.0.1, x"])
def test_trusted_proxies_must_be_addresses(value: str) -> None:
    with pytest.raises(SettingsError, match="INFRAHAUS_TRUSTED_PROXIES"):
        Settings.from_env({"INFRAHAUS_TRUSTED_PROXIES": value})
