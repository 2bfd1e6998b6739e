import pytest

from infrahaus_proxmox import TlsPolicy, normalize_fingerprint

CANONICAL = ":".join(f"{i:02X}" for i in range(0xA0, 0xC0))


@pytest.mark.parametrize(
    "variant",
    [
        CANONICAL,
        CANONICAL.lower(),
        CANONICAL.replace(":", ""),
        CANONICAL.replace(":", "-"),
        CANONICAL.replace(":", " "),
        f"  sha256:{CANONICAL.lower()}\n",
        f"SHA256={CANONICAL}",
    ],
)
def test_normalize_fingerprint_variants(variant: str) -> None:
    assert normalize_fingerprint(variant) == CANONICAL


@pytest.mark.parametrize("bad", ["", "AB:CD", CANONICAL + ":00", CANONICAL[:-1] + "G", "sha1:" + "AB" * 20])
def test_normalize_fingerprint_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        normalize_fingerprint(bad)


def test_pinned_policy_stores_normalised_fingerprint() -> None:
    policy = TlsPolicy.pinned(CANONICAL.lower().replace(":", ""))
    assert policy.mode == "pinned"
    assert policy.fingerprint == CANONICAL
    assert TlsPolicy.verified().mode == "verified"
    assert TlsPolicy.insecure().mode == "insecure"
