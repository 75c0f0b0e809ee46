"""The census CA and gateway certificate against a real TLS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from keys import tls
from keys.errors import LooseKeyPermissionsError, TlsError, WrongPassphraseError

from .conftest import NOW


def _pki(d: Path, names: Sequence[str] = tls.DEFAULT_SERVER_NAMES, passphrase: bytes | None = None) -> Path:
    d.mkdir()
    ca_key, ca_cert = tls.make_ca(now_ms=NOW - 1000)
    key, cert = tls.make_server_cert(ca_key, ca_cert, names, now_ms=NOW - 1000)
    tls.save_cert(d / "ca.crt", ca_cert)
    tls.save_tls_key(d / "server.key", key, passphrase)
    tls.save_cert(d / "server.crt", cert)
    return d


@asynccontextmanager
async def _echo_server(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readexactly(5))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _hello(port: int, ctx: ssl.SSLContext, server_hostname: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_hostname)
    try:
        writer.write(b"hello")
        await writer.drain()
        return await reader.readexactly(5)
    finally:
        writer.close()


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
async def test_client_pinning_the_ca_connects(tmp_path: Path, hostname: str) -> None:
    pki = _pki(tmp_path / "pki")
    server_ctx = tls.server_ssl_context(pki / "server.crt", pki / "server.key")
    async with _echo_server(server_ctx) as port:
        assert await _hello(port, tls.client_ssl_context(pki / "ca.crt"), hostname) == b"hello"


async def test_client_with_another_ca_is_refused(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki")
    other = _pki(tmp_path / "other")
    server_ctx = tls.server_ssl_context(pki / "server.crt", pki / "server.key")
    async with _echo_server(server_ctx) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _hello(port, tls.client_ssl_context(other / "ca.crt"), "localhost")


async def test_name_not_in_certificate_is_refused(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki", names=["gateway.census.example"])
    server_ctx = tls.server_ssl_context(pki / "server.crt", pki / "server.key")
    async with _echo_server(server_ctx) as port:
        client = tls.client_ssl_context(pki / "ca.crt")
        with pytest.raises(ssl.SSLCertVerificationError):
            await _hello(port, client, "localhost")
        assert await _hello(port, client, "gateway.census.example") == b"hello"


async def test_encrypted_server_key(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki", passphrase=b"tls-pass")
    with pytest.raises(WrongPassphraseError):
        tls.server_ssl_context(pki / "server.crt", pki / "server.key", b"nope")
    with pytest.raises(WrongPassphraseError):
        tls.server_ssl_context(pki / "server.crt", pki / "server.key")
    server_ctx = tls.server_ssl_context(pki / "server.crt", pki / "server.key", b"tls-pass")
    async with _echo_server(server_ctx) as port:
        assert await _hello(port, tls.client_ssl_context(pki / "ca.crt"), "localhost") == b"hello"


def test_server_key_with_loose_mode_refused(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki")
    (pki / "server.key").chmod(0o644)
    with pytest.raises(LooseKeyPermissionsError):
        tls.server_ssl_context(pki / "server.crt", pki / "server.key")


def test_mismatched_cert_and_key_refused(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki")
    other = _pki(tmp_path / "other")
    with pytest.raises(TlsError):
        tls.server_ssl_context(pki / "server.crt", other / "server.key")


def test_certificate_contents(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki", names=["gw.example", "10.1.2.3", "::1"])
    ca = tls.load_cert(pki / "ca.crt")
    cert = tls.load_cert(pki / "server.crt")
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == 3650
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("::1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc


@pytest.mark.parametrize("names", [[], ["bad name"], [""]])
def test_bad_server_names_refused(names: list[str]) -> None:
    ca_key, ca_cert = tls.make_ca(now_ms=NOW)
    with pytest.raises(TlsError):
        tls.make_server_cert(ca_key, ca_cert, names, now_ms=NOW)


def test_client_context_needs_a_real_ca_file(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a cert")
    with pytest.raises(Exception, match="certificate") as info:
        tls.client_ssl_context(bad)
    assert type(info.value).__module__ == "keys.errors"
