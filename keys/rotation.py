"""Rotating the gateway's TLS certificate, receipt key and the census data key (``sanaq-keys rotate``).

Each rotation changes the authority directory and publishes a new snapshot;
nothing reaches a gateway until the operator exports and installs a new
gateway directory (``docs/operations.md``, "Rotating keys", gives the order).

A receipt key can be *prepared* ahead (``rotate receipt --prepare``):
``gateway-next.key/.pub`` is listed in every snapshot and every new bundle
while the gateway keeps signing with the current key. Tablets learn receipt
keys only from their bundle, so a next key prepared at the ceremony, before
tablets are enrolled, lets a later ``rotate receipt`` switch to it without
any tablet refusing the new receipts. Without a prepared key ``rotate
receipt`` makes a new one at once (tablets enrolled before then cannot
verify its receipts until they get a new bundle: the emergency case).

What is kept, and why (``<authority>/retired/``, directory 0700)::

    receipt-<key id>.pub   a retired receipt key: stays listed in every snapshot's
                           gateway_keys, so receipts and sync states it signed
                           keep verifying; its private half is deleted
    data-<key id>.key/.pub a retired data key: batches sealed to it (tablets
                           offline for weeks, USB exports) must still open, so
                           ``export-gateway`` writes it next to ``data.key``

The TLS key and certificate are replaced outright: clients pin the census CA,
not the server certificate. Order inside one rotation: the retired copy is
written first, then the new key files (each atomically), then
``authority.json``; a crash before the last step leaves the old meta naming
the old keys, which ``Authority.open`` then refuses as inconsistent (the
retired copy is intact, so nothing is lost: restore the ``.pub`` from it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from wire.keyids import key_id

from .authority import Authority
from .errors import AuthorityError, StorageError
from .files import atomic_write, load_private_pem, save_data_key, save_public_key, save_signing_key
from .tls import load_cert, load_tls_key, make_server_cert, save_cert, save_tls_key

__all__ = ["Rotation", "prepare_receipt", "rotate_data", "rotate_receipt", "rotate_tls", "server_names_of"]

_log = structlog.get_logger("keys.rotation")
MAX_RECEIPT_KEYS = 16  # a snapshot's gateway_keys (wire.snapshot) and a bundle's list hold at most this many


def _room_for_one_more_receipt_key(a: Authority) -> None:
    if len(a.receipt_public_keys()) >= MAX_RECEIPT_KEYS:
        raise AuthorityError(
            f"a snapshot lists at most {MAX_RECEIPT_KEYS} receipt keys: remove the oldest retired/receipt-*.pub "
            "once no receipt or sync state it signed is still needed", path=str(a.path / Authority.RETIRED))


@dataclass(frozen=True, slots=True)
class Rotation:
    """What one rotation did: which key id went out, which came in, the snapshot version published."""

    kind: str  # tls | receipt | receipt-prepare | data
    old_key_id: str
    new_key_id: str
    snapshot_version: int
    server_names: tuple[str, ...] = ()


def _retired_dir(a: Authority) -> Path:
    d = a.path / Authority.RETIRED
    try:
        d.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise StorageError("cannot create the retired-keys directory", path=str(d), error=e.strerror) from e
    return d


def _write_meta(a: Authority, **changes: str) -> None:
    path = a.path / Authority.META
    meta = json.loads(path.read_text("utf-8"))
    meta.update(changes)
    atomic_write(path, json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n", mode=0o644)


def prepare_receipt(a: Authority, *, now_ms: int, validity_ms: int) -> Rotation:
    """Make the next receipt key and list it in snapshots and bundles; the gateway keeps the current one."""
    a.root_signing_key()
    _room_for_one_more_receipt_key(a)
    if a.next_receipt_public_key() is not None:
        raise AuthorityError("a next receipt key is already prepared; `rotate receipt` switches to it",
                             path=str(a.path / Authority.NEXT_GATEWAY_PUB))
    new = SigningKey.generate()
    save_signing_key(a.path / Authority.NEXT_GATEWAY_KEY, new, a.passphrase)
    save_public_key(a.path / Authority.NEXT_GATEWAY_PUB, bytes(new.verify_key))
    a.publish(now_ms=now_ms, validity_ms=validity_ms)
    rotation = Rotation("receipt-prepare", a.gateway_key_id.hex(), key_id(bytes(new.verify_key)).hex(),
                        a.registry.latest_version())
    _log.info("keys.rotation.prepared", kind="receipt", next_key_id=rotation.new_key_id)
    return rotation


def rotate_receipt(a: Authority, *, now_ms: int, validity_ms: int) -> Rotation:
    """Switch to the prepared receipt key (else a new one); the old public key stays listed in every snapshot."""
    a.root_signing_key()  # fail on a wrong passphrase before anything changes
    if a.next_receipt_public_key() is None:
        _room_for_one_more_receipt_key(a)
    old_pub = a.gateway_public_key
    save_public_key(_retired_dir(a) / f"receipt-{key_id(old_pub).hex()}.pub", old_pub)
    prepared = a.next_receipt_public_key()
    new = a.next_receipt_signing_key() if prepared is not None else SigningKey.generate()
    save_signing_key(a.path / Authority.GATEWAY_KEY, new, a.passphrase)
    save_public_key(a.path / Authority.GATEWAY_PUB, bytes(new.verify_key))
    _write_meta(a, gateway_key_id=key_id(bytes(new.verify_key)).hex())
    if prepared is not None:
        (a.path / Authority.NEXT_GATEWAY_KEY).unlink()
        (a.path / Authority.NEXT_GATEWAY_PUB).unlink()
    a.gateway_public_key = bytes(new.verify_key)
    a.publish(now_ms=now_ms, validity_ms=validity_ms)
    rotation = Rotation("receipt", key_id(old_pub).hex(), a.gateway_key_id.hex(), a.registry.latest_version())
    _log.info("keys.rotation.done", kind="receipt", old_key_id=rotation.old_key_id, new_key_id=rotation.new_key_id)
    return rotation


def rotate_data(a: Authority, *, now_ms: int, validity_ms: int) -> Rotation:
    """A new census data key; the old private key is kept (``retired/``) so batches sealed to it still open."""
    a.root_signing_key()
    old = a.data_private_key()
    old_id = a.data_key_id.hex()
    retired = _retired_dir(a)
    save_data_key(retired / f"data-{old_id}.key", old, a.passphrase)
    save_public_key(retired / f"data-{old_id}.pub", bytes(old.public_key))
    new = PrivateKey.generate()
    save_data_key(a.path / Authority.DATA_KEY, new, a.passphrase)
    save_public_key(a.path / Authority.DATA_PUB, bytes(new.public_key))
    _write_meta(a, data_key_id=key_id(bytes(new.public_key)).hex())
    a.data_public_key = bytes(new.public_key)
    a.publish(now_ms=now_ms, validity_ms=validity_ms)
    rotation = Rotation("data", old_id, a.data_key_id.hex(), a.registry.latest_version())
    _log.info("keys.rotation.done", kind="data", old_key_id=old_id, new_key_id=rotation.new_key_id)
    return rotation


def rotate_tls(
    a: Authority, *, now_ms: int, validity_ms: int, server_names: Sequence[str] | None, validity_days: int = 825
) -> Rotation:
    """A new TLS key and certificate from the census CA (new names, new expiry); the old ones are replaced.

    ``server_names`` None keeps the current certificate's names. A snapshot is
    published too, so every rotation leaves the same trail in the registry.
    """
    a.root_signing_key()
    ca_key = load_private_pem(a.ca_key_path, a.passphrase)
    ca_cert = load_cert(a.ca_cert_path)
    old_cert = load_cert(a.tls_cert_path)
    load_tls_key(a.tls_key_path, a.passphrase)
    names = list(server_names) if server_names else server_names_of(old_cert)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise StorageError("ca.key is not an ECDSA key", path=str(a.ca_key_path))
    key, cert = make_server_cert(ca_key, ca_cert, names, now_ms=now_ms, validity_days=validity_days)
    save_tls_key(a.tls_key_path, key, a.passphrase)
    save_cert(a.tls_cert_path, cert)
    a.publish(now_ms=now_ms, validity_ms=validity_ms)
    rotation = Rotation("tls", f"{old_cert.serial_number:x}", f"{cert.serial_number:x}",
                        a.registry.latest_version(), tuple(names))
    _log.info("keys.rotation.done", kind="tls", old_serial=rotation.old_key_id, new_serial=rotation.new_key_id,
              server_names=names)
    return rotation


def server_names_of(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for, as text."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]
