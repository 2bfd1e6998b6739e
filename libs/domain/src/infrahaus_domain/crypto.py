"""Secrets at rest: AES-256-GCM with 96-bit random nonces and a key id in every token.

Token format: `v1:<kid>:<base64(nonce | ciphertext+tag)>`. The keyring's first key encrypts; every key decrypts,
so old ciphertexts stay readable until `infrahaus keys rotate` re-encrypts them under the active key.
"""

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infrahaus_domain.errors import CryptoError, SettingsError
from infrahaus_domain.settings import EncryptionKey

TOKEN_VERSION = "v1"  # noqa: S105 - a format tag, not a secret
_NONCE_BYTES = 12


def generate_key(kid: str) -> EncryptionKey:
    """A fresh random 256-bit key."""
    return EncryptionKey(kid=kid, key=AESGCM.generate_key(bit_length=256))


def format_key(key: EncryptionKey) -> str:
    """The `kid:base64key` line understood by `INFRAHAUS_ENCRYPTION_KEYS` and the key file."""
    return f"{key.kid}:{base64.b64encode(key.key).decode()}"


def token_kid(token: str) -> str:
    """The key id a token was encrypted with (no decryption)."""
    version, _, rest = token.partition(":")
    kid, sep, _ = rest.partition(":")
    if version != TOKEN_VERSION or not sep:
        raise CryptoError("Stored secret has an unknown format.")
    return kid


class SecretBox:
    """Encrypts and decrypts short secrets (tokens, passwords, private keys) with the keyring."""

    def __init__(self, keys: Sequence[EncryptionKey]) -> None:
        if not keys:
            raise SettingsError(
                "INFRAHAUS_ENCRYPTION_KEYS", "no encryption key configured (or set INFRAHAUS_ENCRYPTION_KEY_FILE)"
            )
        self._active = keys[0]
        self._ciphers = {k.kid: AESGCM(k.key) for k in keys}

    @property
    def active_kid(self) -> str:
        return self._active.kid

    def encrypt(self, plaintext: str) -> str:
        """Encrypt under the active key; the key id is bound as associated data."""
        nonce = os.urandom(_NONCE_BYTES)
        kid = self._active.kid
        sealed = self._ciphers[kid].encrypt(nonce, plaintext.encode(), self._aad(kid))
        return f"{TOKEN_VERSION}:{kid}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str) -> str:
        """Decrypt a token from `encrypt`, with whichever keyring key it names."""
        kid = token_kid(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise CryptoError(f"Stored secret uses key {kid!r}, which is not in the keyring.")
        try:
            blob = base64.b64decode(token.rsplit(":", 1)[1], validate=True)
            plaintext = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], self._aad(kid))
        except (binascii.Error, ValueError, InvalidTag):
            raise CryptoError("Stored secret cannot be decrypted (damaged or wrong key).") from None
        return plaintext.decode()

    def needs_rotation(self, token: str) -> bool:
        """True when the token was not encrypted with the active key."""
        return token_kid(token) != self._active.kid

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the active key (unchanged if it already uses it)."""
        return self.encrypt(self.decrypt(token)) if self.needs_rotation(token) else token

    @staticmethod
    def _aad(kid: str) -> bytes:
        return f"{TOKEN_VERSION}:{kid}".encode()
