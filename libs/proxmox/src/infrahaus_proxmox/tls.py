"""TLS policies for talking to Proxmox nodes, certificate probing and fingerprint pinning.

A pinned policy trusts exactly one leaf certificate. The client first fetches the node's
certificate with a bare TLS handshake (nothing is sent over it), compares its SHA-256 with the
pin, and only then builds an SSL context whose sole trust anchor is that certificate — so a
token is never sent to a peer whose certificate was not checked, and a certificate swapped in
after the probe fails the handshake of the real connection.
"""

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import ssl
from datetime import datetime
from typing import Literal

import msgspec
from cryptography import x509

from infrahaus_proxmox.errors import ProxmoxConnectTimeout, ProxmoxTlsHandshakeError, ProxmoxUnreachable

TlsMode = Literal["verified", "pinned", "insecure"]

_HEX_RE = re.compile(r"^[0-9A-F]{64}$")


def normalize_fingerprint(value: str) -> str:
    """Return a SHA-256 fingerprint as Proxmox shows it: upper-case hex pairs joined by colons.

    Accepts colons, dashes, spaces, any case and an optional ``sha256`` prefix; raises
    ValueError unless exactly 32 bytes remain.
    """
    text = value.strip()
    if text.lower().startswith("sha256"):
        text = text[6:].lstrip(":= ")
    compact = re.sub(r"[\s:\-]", "", text).upper()
    if not _HEX_RE.match(compact):
        raise ValueError("a SHA-256 fingerprint has 32 bytes of hex, e.g. 'AB:CD:...'")
    return ":".join(compact[i : i + 2] for i in range(0, 64, 2))


def fingerprint_of(der: bytes) -> str:
    """SHA-256 fingerprint of a DER certificate in normalised form."""
    return normalize_fingerprint(hashlib.sha256(der).hexdigest())


class TlsPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How the client authenticates the node's certificate. Build it with one of the constructors."""

    mode: TlsMode
    fingerprint: str | None = None
    ca_pem: str | None = None

    @classmethod
    def verified(cls, ca_pem: str | None = None) -> "TlsPolicy":
        """Verify the chain and host name, against `ca_pem` (a private CA) or the default trust store."""
        return cls(mode="verified", ca_pem=ca_pem)

    @classmethod
    def pinned(cls, fingerprint_sha256: str) -> "TlsPolicy":
        """Trust exactly the certificate with this SHA-256 fingerprint (self-signed nodes)."""
        return cls(mode="pinned", fingerprint=normalize_fingerprint(fingerprint_sha256))

    @classmethod
    def insecure(cls) -> "TlsPolicy":
        """No verification at all. Only for explicit opt-out; the token is exposed to any peer."""
        return cls(mode="insecure")


class CertificateInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A node's leaf certificate as seen in a TLS handshake."""

    fingerprint_sha256: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    pem: str


def _sni(host: str) -> str | None:
    """The name to send as SNI: none for an address literal (TLS forbids it)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return None


def _probe_context() -> ssl.SSLContext:
    # The probe only reads the certificate; trust is decided by the caller from its fingerprint.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def pinned_ssl_context(pem: str) -> ssl.SSLContext:
    """An SSL context whose only trust anchor is the given (already fingerprint-checked) certificate."""
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False
    # Node certificates are signed by the cluster CA; the leaf alone must be enough to anchor.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


async def fetch_certificate(
    host: str,
    port: int,
    timeout: float = 5.0,  # noqa: ASYNC109
    *,
    address: str | None = None,
) -> CertificateInfo:
    """Fetch the leaf certificate a TLS server presents, without sending any application data.

    `address` is where to connect (an address the caller resolved and checked); `host` stays the name sent as SNI.
    Raises ProxmoxUnreachable (refused, DNS), ProxmoxConnectTimeout, or ProxmoxTlsError when no
    TLS handshake is possible.
    """
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(
                address or host,
                port,
                ssl=_probe_context(),
                server_hostname=_sni(host),
                ssl_handshake_timeout=timeout,
            )
    except TimeoutError as exc:
        raise ProxmoxConnectTimeout(f"timed out connecting to {host}:{port}") from exc
    except ssl.SSLError as exc:
        # The reason is the local TLS library's (e.g. WRONG_VERSION_NUMBER), never bytes the peer sent.
        raise ProxmoxTlsHandshakeError(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from exc
    except OSError as exc:
        raise ProxmoxUnreachable(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    if not der:
        raise ProxmoxTlsHandshakeError(f"{host}:{port} presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    return CertificateInfo(
        fingerprint_sha256=fingerprint_of(der),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=ssl.DER_cert_to_PEM_cert(der),
    )
