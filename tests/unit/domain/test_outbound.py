"""The outbound policy decides on addresses alone: these tests never connect anywhere (names resolve through an
injected lookup)."""

import ipaddress

import pytest

from infrahaus_domain.errors import SettingsError
from infrahaus_domain.outbound import OutboundDeniedError, OutboundPolicy, UnresolvableHostError
from infrahaus_domain.settings import Settings

REFUSED_BY_DEFAULT = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "0.0.0.0",  # noqa: S104 - reaches the local machine on Linux: refused
    "::",
    "169.254.169.254",  # cloud metadata
    "169.254.1.1",
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "224.0.0.1",
    "255.255.255.255",
]


@pytest.mark.parametrize("address", REFUSED_BY_DEFAULT)
async def test_local_link_local_and_metadata_addresses_are_refused_by_default(address: str) -> None:
    with pytest.raises(OutboundDeniedError):
        await OutboundPolicy().resolve(address, 8006)


@pytest.mark.parametrize("address", ["192.0.2.10", "10.1.2.3", "2001:db8::10", "fd12:3456::1"])
async def test_other_addresses_are_allowed_by_default(address: str) -> None:
    assert await OutboundPolicy().resolve(address, 8006) == str(ipaddress.ip_address(address))


async def test_loopback_is_allowed_in_the_embedded_mode_but_metadata_is_not() -> None:
    policy = OutboundPolicy(loopback=True)
    assert await policy.resolve("127.0.0.1", 8006) == "127.0.0.1"
    assert await policy.resolve("[::1]", 8006) == "::1"
    with pytest.raises(OutboundDeniedError):
        await policy.resolve("169.254.169.254", 80)


async def test_an_allow_entry_inside_a_refused_range_opens_it_a_wider_one_does_not() -> None:
    narrow = OutboundPolicy.parse(["127.0.0.1/32"])
    assert await narrow.resolve("127.0.0.1", 8006) == "127.0.0.1"
    with pytest.raises(OutboundDeniedError):
        await narrow.resolve("127.0.0.2", 8006)
    everything = OutboundPolicy.parse(["0.0.0.0/0", "::/0"])
    assert await everything.resolve("192.0.2.1", 8006) == "192.0.2.1"
    for refused in ("127.0.0.1", "169.254.169.254", "::1", "fe80::1"):
        with pytest.raises(OutboundDeniedError):
            await everything.resolve(refused, 8006)


async def test_an_allow_list_admits_nothing_else() -> None:
    policy = OutboundPolicy.parse(["10.0.0.0/8", "pve.example.com", "*.lab.example.com"])
    assert await policy.resolve("10.20.30.40", 8006) == "10.20.30.40"
    with pytest.raises(OutboundDeniedError, match="INFRAHAUS_OUTBOUND_ALLOW"):
        await policy.resolve("192.0.2.1", 8006)


async def test_deny_wins_over_allow_by_address_and_by_name() -> None:
    lookups: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["10.0.0.5"]

    policy = OutboundPolicy.parse(["10.0.0.0/8"], ["10.0.0.5/32", "*.blocked.example"])
    policy = OutboundPolicy(allow=policy.allow, deny=policy.deny, lookup=lookup)
    with pytest.raises(OutboundDeniedError, match="DENY"):
        await policy.resolve("10.0.0.5", 8006)
    with pytest.raises(OutboundDeniedError, match="DENY"):
        await policy.resolve("pve.blocked.example", 8006)
    assert lookups == []  # a denied name is refused before it is even resolved
    with pytest.raises(OutboundDeniedError):
        await policy.resolve("pve.example", 8006)  # resolves to the denied address
    assert lookups == ["pve.example"]


async def test_a_name_is_resolved_once_and_every_address_is_checked() -> None:
    answers = {"good.example": ["192.0.2.7", "192.0.2.8"], "mixed.example": ["192.0.2.9", "169.254.169.254"]}
    calls: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[host]

    policy = OutboundPolicy(lookup=lookup)
    assert await policy.resolve("good.example", 443) == "192.0.2.7"
    assert calls == ["good.example"]
    # An allowed address beside a refused one does not carry the name through.
    with pytest.raises(OutboundDeniedError):
        await policy.resolve("mixed.example", 443)


async def test_allowed_names_still_cannot_reach_refused_addresses() -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    policy = OutboundPolicy.parse(["pve.example.com"])
    policy = OutboundPolicy(allow=policy.allow, lookup=lookup)
    with pytest.raises(OutboundDeniedError):
        await policy.resolve("pve.example.com", 8006)


async def test_a_name_without_addresses_is_unresolvable() -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return []

    with pytest.raises(UnresolvableHostError):
        await OutboundPolicy(lookup=lookup).resolve("nothing.example", 8006)


@pytest.mark.parametrize("value", ["not a cidr!", "10.0.0.0/33", "http://pve.example"])
def test_bad_entries_stop_the_process_naming_the_variable(value: str) -> None:
    for variable in ("INFRAHAUS_OUTBOUND_ALLOW", "INFRAHAUS_OUTBOUND_DENY"):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({variable: value})


def test_the_settings_read_both_lists() -> None:
    settings = Settings.from_env(
        {"INFRAHAUS_OUTBOUND_ALLOW": "10.0.0.0/8, pve.example.com", "INFRAHAUS_OUTBOUND_DENY": "10.9.0.0/16"}
    )
    assert settings.outbound.allow == ("10.0.0.0/8", "pve.example.com")
    assert settings.outbound.deny == ("10.9.0.0/16",)
    assert settings.outbound.loopback is False
