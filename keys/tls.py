"""The census TLS CA and the gateway server certificate, and the SSL contexts around them.

The CA is ECDSA P-256, self-signed, ``CA:TRUE, pathlen:0`` with only
``keyCertSign``/``cRLSign``; the server certificate carries the gateway's DNS
names and IP addresses as SANs and ``serverAuth`` only. Clients trust exactly
this CA (``client_ssl_context``), never the system store: the VPN is a layer
under TLS, not a replacement for it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CorruptKeyFileError, KeyFileMissingError, StorageError, TlsError
from .files import PUBLIC_MODE, atomic_write, load_private_pem, serialize_private_key

__all__ = [
    "DEFAULT_SERVER_NAMES",
    "client_ssl_context",
    "load_cert",
    "load_tls_key",
    "make_ca",
    "make_server_cert",
    "save_cert",
    "save_tls_key",
    "server_ssl_context",
]

DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")
_BACKDATE = dt.timedelta(minutes=5)


def _time(now_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)


def make_ca(
    *, now_ms: int, common_name: str = "Sanaq Census CA", validity_days: int = 3650
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh self-signed CA valid from ``now`` (minus 5 minutes of clock slack)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _time(now_ms) - _BACKDATE
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    if not names:
        raise TlsError("a server certificate needs at least one name")
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not name or len(name) > 253 or not name.isascii() or any(c.isspace() for c in name):
            raise TlsError("server name is not an ASCII DNS name or an IP address", name=name)
        general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    *,
    now_ms: int,
    validity_days: int = 825,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server key and certificate for ``server_names`` (IP literals become IP SANs)."""
    san = _san(server_names)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _time(now_ms) - _BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sanaq Sync gateway")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + dt.timedelta(days=validity_days), ca_cert.not_valid_after_utc))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    try:
        return key, builder.sign(ca_key, hashes.SHA256())
    except ValueError as e:
        raise TlsError("cannot build the server certificate", names=list(server_names)) from e


def save_tls_key(
    path: str | os.PathLike[str], key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None
) -> None:
    atomic_write(path, serialize_private_key(key, passphrase))


def load_tls_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    key = load_private_pem(path, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CorruptKeyFileError("not an ECDSA private key", path=str(path))
    return key


def save_cert(path: str | os.PathLike[str], cert: x509.Certificate) -> None:
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM), mode=PUBLIC_MODE)


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as e:
        raise KeyFileMissingError("certificate file not found", path=str(p)) from e
    except OSError as e:
        raise StorageError("cannot read file", path=str(p), error=e.strerror) from e
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise CorruptKeyFileError("not a PEM certificate", path=str(p)) from e


def server_ssl_context(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str], passphrase: bytes | None = None
) -> ssl.SSLContext:
    """Server context (TLS >= 1.2) with the gateway certificate; the key file mode is checked first.

    The key is decrypted here and handed to OpenSSL through ``load_cert_chain``'s
    password callback, so a wrong passphrase is ``WrongPassphraseError``.
    """
    load_tls_key(key_path, passphrase)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(os.fspath(cert_path), os.fspath(key_path), password=passphrase)
    except (ssl.SSLError, OSError) as e:
        raise TlsError("cannot load the server certificate chain", cert=str(cert_path)) from e
    return ctx


def client_ssl_context(ca_path: str | os.PathLike[str]) -> ssl.SSLContext:
    """Client context that trusts only the census CA in ``ca_path`` and checks host names."""
    load_cert(ca_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca_path))
    except (ssl.SSLError, OSError) as e:
        raise TlsError("cannot load the CA certificate", path=str(ca_path)) from e
    return ctx
