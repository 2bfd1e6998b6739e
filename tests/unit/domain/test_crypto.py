import base64

import pytest

from infrahaus_domain.crypto import SecretBox, generate_key, token_kid
from infrahaus_domain.errors import CryptoError, SettingsError
from infrahaus_domain.settings import EncryptionKey


def test_round_trip_and_token_format() -> None:
    box = SecretBox([generate_key("k1")])
    token = box.encrypt("s3cret-value")
    version, kid, blob = token.split(":")
    assert (version, kid) == ("v1", "k1")
    raw = base64.b64decode(blob)
    assert len(raw) == 12 + len("s3cret-value") + 16  # 96-bit nonce, ciphertext, GCM tag
    assert "s3cret" not in token
    assert box.decrypt(token) == "s3cret-value"


def test_nonces_are_random() -> None:
    box = SecretBox([generate_key("k1")])
    tokens = {box.encrypt("same") for _ in range(50)}
    assert len(tokens) == 50
    assert len({base64.b64decode(t.split(":")[2])[:12] for t in tokens}) == 50


def test_old_keys_decrypt_and_rotation_moves_to_the_active_key() -> None:
    old = generate_key("old")
    token = SecretBox([old]).encrypt("value")
    box = SecretBox([generate_key("new"), old])
    assert box.decrypt(token) == "value"
    assert box.needs_rotation(token)
    rotated = box.rotate(token)
    assert token_kid(rotated) == "new"
    assert box.decrypt(rotated) == "value"
    assert box.rotate(rotated) == rotated


def test_unknown_key_tampering_and_garbage_fail_without_leaking() -> None:
    token = SecretBox([generate_key("a")]).encrypt("value")
    with pytest.raises(CryptoError, match="not in the keyring"):
        SecretBox([generate_key("b")]).decrypt(token)
    box = SecretBox([generate_key("a")])
    with pytest.raises(CryptoError, match="cannot be decrypted"):
        box.decrypt(token)  # same kid, other key material
    real = SecretBox([key := generate_key("c")])
    good = real.encrypt("value")
    raw = bytearray(base64.b64decode(good.split(":")[2]))
    raw[-1] ^= 1
    with pytest.raises(CryptoError):
        real.decrypt(f"v1:c:{base64.b64encode(bytes(raw)).decode()}")
    # The key id is authenticated: relabelling a token under another kid of the same key fails.
    relabelled = SecretBox([key, EncryptionKey(kid="d", key=key.key)])
    with pytest.raises(CryptoError):
        relabelled.decrypt(good.replace("v1:c:", "v1:d:"))
    for garbage in ["", "plain", "v2:c:AAAA", "v1:c:%%%"]:
        with pytest.raises(CryptoError):
            real.decrypt(garbage)


def test_empty_keyring_is_a_settings_error() -> None:
    with pytest.raises(SettingsError) as exc:
        SecretBox([])
    assert exc.value.variable == "INFRAHAUS_ENCRYPTION_KEYS"
