"""The census authority directory: root, data, gateway and TLS keys, the registry, the latest snapshot.

Layout (directory 0700, private files 0600, made by ``Authority.create``)::

    authority.json            {"v": 1, "created_at_ms", "root_key_id", "data_key_id", "gateway_key_id"}
    root.key   root.pub       Ed25519 authority root: signs registry snapshots
    data.key   data.pub       X25519 census data key: every batch is sealed to it
    gateway.key gateway.pub   Ed25519 gateway receipt key (listed in every snapshot)
    gateway-next.key/.pub     the prepared next receipt key, listed too (``rotate receipt --prepare``)
    ca.key     ca.crt         census TLS CA (ECDSA P-256)
    gateway-tls.key gateway-tls.crt   the gateway's server certificate
    registry.db               SQLite device registry (``keys.registry``)
    registry.snapshot         latest published signed snapshot
    retired/                  keys retired by ``sanaq-keys rotate`` (``keys.rotation``)

``create`` builds everything in a temporary sibling directory and renames it
into place, so a crash never leaves a half authority. One passphrase (or
none) protects every private key here. Private keys are read only when an
operation needs them (``publish`` needs the root key; ``list`` needs none).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

import structlog
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from wire.keyids import key_id

from .errors import AuthorityError, CorruptKeyFileError, StorageError
from .files import (
    atomic_write,
    fsync_dir,
    load_data_key,
    load_public_key,
    load_signing_key,
    save_data_key,
    save_public_key,
    save_signing_key,
)
from .registry import Registry
from .tls import DEFAULT_SERVER_NAMES, make_ca, make_server_cert, save_cert, save_tls_key

__all__ = ["DEFAULT_SNAPSHOT_VALIDITY_MS", "Authority"]

DEFAULT_SNAPSHOT_VALIDITY_MS = 7 * 24 * 3600 * 1000
_log = structlog.get_logger("keys.authority")


class Authority:
    """An opened authority directory. Use ``create`` or ``open``; close (or ``with``) when done."""

    META = "authority.json"
    ROOT_KEY, ROOT_PUB = "root.key", "root.pub"
    DATA_KEY, DATA_PUB = "data.key", "data.pub"
    GATEWAY_KEY, GATEWAY_PUB = "gateway.key", "gateway.pub"
    NEXT_GATEWAY_KEY, NEXT_GATEWAY_PUB = "gateway-next.key", "gateway-next.pub"
    CA_KEY, CA_CERT = "ca.key", "ca.crt"
    TLS_KEY, TLS_CERT = "gateway-tls.key", "gateway-tls.crt"
    REGISTRY = "registry.db"
    SNAPSHOT = "registry.snapshot"
    RETIRED = "retired"

    def __init__(self, path: Path, passphrase: bytes | None) -> None:
        self.path = path
        self._passphrase = passphrase
        self.root_public_key = load_public_key(path / self.ROOT_PUB)
        self.data_public_key = load_public_key(path / self.DATA_PUB)
        self.gateway_public_key = load_public_key(path / self.GATEWAY_PUB)
        self._registry: Registry | None = None

    # ---- life cycle -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        now_ms: int,
        passphrase: bytes | None = None,
        server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
        validity_ms: int = DEFAULT_SNAPSHOT_VALIDITY_MS,
    ) -> Authority:
        """Make a new authority at ``path`` (absent or an empty directory) and publish snapshot 1."""
        target = Path(path)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise AuthorityError("target exists and is not an empty directory", path=str(target))
        staging = target.parent / f".{target.name}.init-{secrets.token_hex(6)}"
        try:
            staging.mkdir(mode=0o700)
        except OSError as e:
            raise StorageError("cannot create the authority directory", path=str(staging), error=e.strerror) from e
        try:
            cls._generate(staging, now_ms=now_ms, passphrase=passphrase, server_names=server_names)
            with cls(staging, passphrase) as staged:
                staged.publish(now_ms=now_ms, validity_ms=validity_ms)
            os.rename(staging, target)
            fsync_dir(target.parent)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError("cannot create the authority directory", path=str(target), error=e.strerror) from e
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _log.info("authority.created", root_key_id=key_id(load_public_key(target / cls.ROOT_PUB)).hex())
        return cls.open(target, passphrase=passphrase)

    @classmethod
    def _generate(cls, d: Path, *, now_ms: int, passphrase: bytes | None, server_names: Sequence[str]) -> None:
        root, gateway, data = SigningKey.generate(), SigningKey.generate(), PrivateKey.generate()
        save_signing_key(d / cls.ROOT_KEY, root, passphrase)
        save_public_key(d / cls.ROOT_PUB, bytes(root.verify_key))
        save_data_key(d / cls.DATA_KEY, data, passphrase)
        save_public_key(d / cls.DATA_PUB, bytes(data.public_key))
        save_signing_key(d / cls.GATEWAY_KEY, gateway, passphrase)
        save_public_key(d / cls.GATEWAY_PUB, bytes(gateway.verify_key))
        ca_key, ca_cert = make_ca(now_ms=now_ms)
        tls_key, tls_cert = make_server_cert(ca_key, ca_cert, server_names, now_ms=now_ms)
        save_tls_key(d / cls.CA_KEY, ca_key, passphrase)
        save_cert(d / cls.CA_CERT, ca_cert)
        save_tls_key(d / cls.TLS_KEY, tls_key, passphrase)
        save_cert(d / cls.TLS_CERT, tls_cert)
        meta = {
            "v": 1,
            "created_at_ms": now_ms,
            "root_key_id": key_id(bytes(root.verify_key)).hex(),
            "data_key_id": key_id(bytes(data.public_key)).hex(),
            "gateway_key_id": key_id(bytes(gateway.verify_key)).hex(),
        }
        atomic_write(d / cls.META, json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n", mode=0o644)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, passphrase: bytes | None = None) -> Authority:
        """Open an existing authority; checks its layout and that public keys match ``authority.json``."""
        p = Path(path)
        if not (p / cls.META).is_file():
            raise AuthorityError("not an authority directory (no authority.json)", path=str(p))
        try:
            meta = json.loads((p / cls.META).read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise AuthorityError("authority.json is unreadable", path=str(p)) from e
        if not isinstance(meta, dict) or meta.get("v") != 1:
            raise AuthorityError("authority.json has an unknown version", path=str(p))
        authority = cls(p, passphrase)
        for field, pub in (("root_key_id", authority.root_public_key), ("data_key_id", authority.data_public_key),
                           ("gateway_key_id", authority.gateway_public_key)):
            if meta.get(field) != key_id(pub).hex():
                raise AuthorityError(f"public key file disagrees with authority.json {field}", path=str(p))
        return authority

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    def __enter__(self) -> Authority:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- keys -------------------------------------------------------------------------------

    @property
    def root_key_id(self) -> bytes:
        return key_id(self.root_public_key)

    @property
    def data_key_id(self) -> bytes:
        return key_id(self.data_public_key)

    @property
    def gateway_key_id(self) -> bytes:
        return key_id(self.gateway_public_key)

    def _signing_key(self, name: str, expected: bytes) -> SigningKey:
        key = load_signing_key(self.path / name, self._passphrase)
        if bytes(key.verify_key) != expected:
            raise CorruptKeyFileError("private key does not match its .pub file", path=str(self.path / name))
        return key

    def root_signing_key(self) -> SigningKey:
        return self._signing_key(self.ROOT_KEY, self.root_public_key)

    def gateway_signing_key(self) -> SigningKey:
        return self._signing_key(self.GATEWAY_KEY, self.gateway_public_key)

    def data_private_key(self) -> PrivateKey:
        key = load_data_key(self.path / self.DATA_KEY, self._passphrase)
        if bytes(key.public_key) != self.data_public_key:
            raise CorruptKeyFileError("private key does not match its .pub file", path=str(self.path / self.DATA_KEY))
        return key

    @property
    def passphrase(self) -> bytes | None:
        """The passphrase this authority was opened with (for re-encrypting exported keys)."""
        return self._passphrase

    @property
    def ca_cert_path(self) -> Path:
        return self.path / self.CA_CERT

    @property
    def ca_key_path(self) -> Path:
        return self.path / self.CA_KEY

    @property
    def tls_cert_path(self) -> Path:
        return self.path / self.TLS_CERT

    @property
    def tls_key_path(self) -> Path:
        return self.path / self.TLS_KEY

    @property
    def snapshot_path(self) -> Path:
        return self.path / self.SNAPSHOT

    # ---- registry and snapshots -------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.path / self.REGISTRY)
        return self._registry

    def publish(self, *, now_ms: int, validity_ms: int = DEFAULT_SNAPSHOT_VALIDITY_MS) -> bytes:
        """Sign a new snapshot version of the registry and write it to ``registry.snapshot``."""
        root = self.root_signing_key()
        data = self.registry.build_snapshot(
            root_key=root,
            data_public_key=self.data_public_key,
            gateway_public_keys=self.receipt_public_keys(),
            now_ms=now_ms,
            validity_ms=validity_ms,
        )
        atomic_write(self.snapshot_path, data, mode=0o644)
        _log.info("authority.snapshot.published", version=self.registry.latest_version())
        return data

    def latest_snapshot(self) -> bytes | None:
        try:
            return self.snapshot_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError("cannot read the snapshot", path=str(self.snapshot_path), error=e.strerror) from e

    def gateway_key_map(self) -> dict[bytes, bytes]:
        """Receipt keys the authority vouches for (key id -> public key), to verify sync states."""
        return {key_id(k): k for k in self.receipt_public_keys()}

    def receipt_public_keys(self) -> list[bytes]:
        """The current receipt key, the prepared next one, every retired one (their receipts stay verifiable)."""
        retired = sorted((self.path / self.RETIRED).glob("receipt-*.pub"))
        nxt = self.next_receipt_public_key()
        return [self.gateway_public_key, *([nxt] if nxt is not None else []), *(load_public_key(p) for p in retired)]

    def next_receipt_public_key(self) -> bytes | None:
        path = self.path / self.NEXT_GATEWAY_PUB
        return load_public_key(path) if path.exists() else None

    def next_receipt_signing_key(self) -> SigningKey:
        nxt = self.next_receipt_public_key()
        if nxt is None:
            raise AuthorityError("no next receipt key is prepared", path=str(self.path))
        return self._signing_key(self.NEXT_GATEWAY_KEY, nxt)

    def retired_data_keys(self) -> list[tuple[str, PrivateKey]]:
        """(key id hex, private key) of every retired data key, oldest file name order."""
        keys = []
        for path in sorted((self.path / self.RETIRED).glob("data-*.key")):
            key = load_data_key(path, self._passphrase)
            keys.append((key_id(bytes(key.public_key)).hex(), key))
        return keys
