"""The gateway's key directory: what the online side holds, never the root private key.

Written by ``export_gateway`` (``sanaq-keys export-gateway``), directory 0700::

    gateway.json        {"v": 1, "role": "gateway", "root_public_key", "data_public_key",
                         "receipt_public_key", "server_names"}
    data.key            X25519 census data key (opens batches)          0600
    gateway.key         Ed25519 receipt key (signs receipts, sync states) 0600
    gateway-tls.key     TLS server key                                   0600
    gateway-tls.crt     TLS server certificate (census CA)
    ca.crt              the census CA
    root.pub            authority root public key (verifies snapshots)
    registry.snapshot   latest published snapshot at export time (seed for a ``SnapshotCache``)
    data-<key id>.key   each retired data key (``sanaq-keys rotate data``), 0600: list these in the
                        gateway's ``keys.previous_data_keys`` so batches sealed to them still open

Exported private keys are re-encrypted under the export passphrase (or left
plain when none is given: a systemd service usually reads them from a
credential directory). ``GatewayKeys.load`` checks every key matches
``gateway.json``.
"""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from wire.errors import WireError
from wire.keyids import key_id, parse_hex

from .authority import Authority
from .bundle import write_bundle_dir
from .errors import BundleError, CorruptKeyFileError
from .files import PRIVATE_MODE, PUBLIC_MODE, load_data_key, load_public_key, load_signing_key, serialize_private_key
from .tls import load_cert, load_tls_key, server_ssl_context

__all__ = ["GatewayKeys", "export_gateway"]

_log = structlog.get_logger("keys.gateway_bundle")
_MEMBERS = {"v", "role", "root_public_key", "data_public_key", "receipt_public_key", "server_names"}


def export_gateway(
    authority: Authority, out_dir: str | os.PathLike[str], *, passphrase: bytes | None = None
) -> GatewayKeys:
    """Write the gateway key directory ``out_dir`` (must not exist) from an opened authority."""
    out = Path(out_dir)
    if out.exists():
        raise BundleError("output directory already exists", path=str(out))
    data = authority.data_private_key()
    receipt = authority.gateway_signing_key()
    tls_key = load_tls_key(authority.tls_key_path, authority.passphrase)
    cert = load_cert(authority.tls_cert_path)
    snapshot = authority.latest_snapshot()
    if snapshot is None:
        raise BundleError("the authority has not published a snapshot yet", path=str(authority.path))
    meta = {
        "v": 1,
        "role": "gateway",
        "root_public_key": authority.root_public_key.hex(),
        "data_public_key": authority.data_public_key.hex(),
        "receipt_public_key": authority.gateway_public_key.hex(),
        "server_names": _server_names(cert),
    }
    retired = {
        f"data-{kid}.key": (serialize_private_key(x25519.X25519PrivateKey.from_private_bytes(bytes(key)), passphrase),
                            PRIVATE_MODE)
        for kid, key in authority.retired_data_keys()
    }
    write_bundle_dir(out, retired | {
        "gateway.json": (json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n", PUBLIC_MODE),
        "data.key": (serialize_private_key(x25519.X25519PrivateKey.from_private_bytes(bytes(data)), passphrase),
                     PRIVATE_MODE),
        "gateway.key": (serialize_private_key(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(receipt)),
                                              passphrase), PRIVATE_MODE),
        "gateway-tls.key": (serialize_private_key(tls_key, passphrase), PRIVATE_MODE),
        "gateway-tls.crt": (authority.tls_cert_path.read_bytes(), PUBLIC_MODE),
        "ca.crt": (authority.ca_cert_path.read_bytes(), PUBLIC_MODE),
        "root.pub": (authority.root_public_key.hex().encode() + b"\n", PUBLIC_MODE),
        "registry.snapshot": (snapshot, PUBLIC_MODE),
    })
    _log.info("gateway_keys.exported", receipt_key_id=authority.gateway_key_id.hex(), retired_data_keys=len(retired))
    return GatewayKeys.load(out, passphrase)


def _server_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]


@dataclass(frozen=True, slots=True)
class GatewayKeys:
    path: Path
    root_public_key: bytes
    data_key: PrivateKey = field(repr=False)
    data_public_key: bytes
    receipt_key: SigningKey = field(repr=False)
    receipt_public_key: bytes
    server_names: tuple[str, ...]
    previous_data_key_files: tuple[str, ...] = ()

    @property
    def tls_cert_path(self) -> Path:
        return self.path / "gateway-tls.crt"

    @property
    def tls_key_path(self) -> Path:
        return self.path / "gateway-tls.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.path / "ca.crt"

    @property
    def snapshot_path(self) -> Path:
        return self.path / "registry.snapshot"

    @property
    def data_key_id(self) -> bytes:
        return key_id(self.data_public_key)

    @property
    def receipt_key_id(self) -> bytes:
        return key_id(self.receipt_public_key)

    def server_ssl_context(self, passphrase: bytes | None = None) -> ssl.SSLContext:
        """``ssl.SSLContext`` for the gateway's HTTPS listener."""
        return server_ssl_context(self.tls_cert_path, self.tls_key_path, passphrase)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: bytes | None = None) -> GatewayKeys:
        p = Path(path)
        try:
            meta = json.loads((p / "gateway.json").read_bytes()[: 64 * 1024])
        except (OSError, ValueError) as e:
            raise BundleError("gateway.json is missing or not JSON", path=str(p)) from e
        if not isinstance(meta, dict) or set(meta) != _MEMBERS or meta["v"] != 1 or meta["role"] != "gateway":
            raise BundleError("gateway.json has the wrong members or version", path=str(p))
        try:
            expected = {n: parse_hex(meta[n], 32, n) for n in ("root_public_key", "data_public_key",
                                                                "receipt_public_key")}
        except WireError as e:
            raise BundleError("gateway.json key is not 64 lowercase hex digits", path=str(p)) from e
        names = meta["server_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BundleError("gateway.json server_names must be a list of strings", field="server_names")
        data = load_data_key(p / "data.key", passphrase)
        receipt = load_signing_key(p / "gateway.key", passphrase)
        load_tls_key(p / "gateway-tls.key", passphrase)
        load_cert(p / "gateway-tls.crt")
        load_cert(p / "ca.crt")
        if load_public_key(p / "root.pub") != expected["root_public_key"]:
            raise BundleError("root.pub differs from gateway.json", field="root_public_key")
        if bytes(data.public_key) != expected["data_public_key"]:
            raise CorruptKeyFileError("data.key does not match gateway.json", path=str(p / "data.key"))
        if bytes(receipt.verify_key) != expected["receipt_public_key"]:
            raise CorruptKeyFileError("gateway.key does not match gateway.json", path=str(p / "gateway.key"))
        return cls(
            path=p,
            root_public_key=expected["root_public_key"],
            data_key=data,
            data_public_key=expected["data_public_key"],
            receipt_key=receipt,
            receipt_public_key=expected["receipt_public_key"],
            server_names=tuple(names),
            previous_data_key_files=tuple(sorted(f.name for f in p.glob("data-*.key"))),
        )
