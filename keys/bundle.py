"""Provisioning bundles: what an enrolled tablet or ingest station is given.

Directory layout (0700; written by ``keys.enrollment``)::

    device.key          Ed25519 device key, PEM PKCS8, 0600, optionally passphrase-encrypted
    provisioning.json   {"v": 1, "role": "tablet" | "station" | "web", "device_id", "key_id",
                         "gateway_url", "root_public_key",
                         tablets only: "usb_serial", "institution", "worker_id",
                         "census": {"date": "YYYY-MM-DD", "utc_offset_minutes": int}}
    ca.crt              the census TLS CA to pin
    registry.snapshot   the snapshot published at enrollment (lists this device)

For a station ``device_id`` is the station id, for a web service its web id. ``ProvisioningBundle.load``
checks every member strictly, that ``key_id`` is the device key's, and that
the snapshot verifies under ``root_public_key`` and lists this device with
this key (expiry is not checked: a fresh snapshot is fetched when online).
The data key and the gateway receipt keys are taken from that root-verified
snapshot only (docs/protocol.md section 12.4); provisioning.json carries no
copy of them.
A bundle directory is written whole or not at all (staging dir + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nacl.signing import SigningKey

from wire.census_sheet import FOUNDING_ORDER_MOMENT, CensusMoment
from wire.envelope import check_device_id
from wire.errors import WireError
from wire.keyids import key_id, parse_hex
from wire.snapshot import StationEntry, TabletEntry, WebServiceEntry, accept_snapshot

from .errors import BundleError, KeysError, StorageError
from .files import atomic_write, fsync_dir, load_signing_key
from .tls import load_cert

__all__ = ["BUNDLE_FILES", "ProvisioningBundle", "check_gateway_url", "provisioning_json", "write_bundle_dir"]

DEVICE_KEY = "device.key"
PROVISIONING = "provisioning.json"
CA_CERT = "ca.crt"
SNAPSHOT = "registry.snapshot"
BUNDLE_FILES = (DEVICE_KEY, PROVISIONING, CA_CERT, SNAPSHOT)
_COMMON = {"v", "role", "device_id", "key_id", "gateway_url", "root_public_key"}
_TABLET_ONLY = {"usb_serial", "institution", "worker_id", "census"}
_MAX_JSON = 64 * 1024


def check_gateway_url(url: object) -> str:
    """An ``https://host[:port][/path]`` URL without credentials, query or fragment."""
    if not isinstance(url, str) or len(url) > 512:
        raise BundleError("gateway_url must be a string of at most 512 characters", field="gateway_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BundleError("gateway_url is not a URL", field="gateway_url") from e
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.query or parts.fragment:
        raise BundleError("gateway_url must be https://host[:port][/path]", field="gateway_url", port=port)
    return url


def provisioning_json(
    *,
    role: str,
    device_id: str,
    public_key: bytes,
    gateway_url: str,
    root_public_key: bytes,
    usb_serial: str | None = None,
    institution: str | None = None,
    worker_id: str | None = None,
    census: CensusMoment = FOUNDING_ORDER_MOMENT,
) -> bytes:
    """The ``provisioning.json`` bytes for a bundle (tablet members only when ``role == "tablet"``)."""
    body: dict[str, Any] = {
        "v": 1,
        "role": role,
        "device_id": device_id,
        "key_id": key_id(public_key).hex(),
        "gateway_url": check_gateway_url(gateway_url),
        "root_public_key": root_public_key.hex(),
    }
    if role == "tablet":
        body.update(usb_serial=usb_serial, institution=institution, worker_id=worker_id, census=census.as_json())
    return json.dumps(body, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def write_bundle_dir(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Write ``files`` (name -> (data, mode)) as a new directory ``target``, all or nothing."""
    if target.exists():
        raise BundleError("output directory already exists", path=str(target))
    staging = target.parent / f".{target.name}.bundle-{secrets.token_hex(6)}"
    try:
        staging.mkdir(mode=0o700)
        for name, (data, mode) in files.items():
            atomic_write(staging / name, data, mode=mode)
        os.rename(staging, target)
        fsync_dir(target.parent)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError("cannot write the bundle directory", path=str(target), error=e.strerror) from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _member(body: dict[str, Any], name: str, max_len: int) -> str:
    value = body[name]
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise BundleError(f"provisioning.json member {name!r} must be a string of 1..{max_len} characters",
                          field=name)
    return value


def _hex(name: str, value: object, size: int) -> bytes:
    try:
        return parse_hex(value, size, name)
    except WireError as e:
        raise BundleError(f"provisioning.json member {name!r} must be {2 * size} lowercase hex digits",
                          field=name) from e


@dataclass(frozen=True, slots=True)
class ProvisioningBundle:
    path: Path
    role: str
    device_id: str
    key_id: bytes
    signing_key: SigningKey = field(repr=False)
    gateway_url: str
    root_public_key: bytes
    usb_serial: str | None
    institution: str | None
    worker_id: str | None
    census: CensusMoment | None
    ca_cert_path: Path
    snapshot: bytes = field(repr=False)
    data_public_key: bytes = b""  # from the root-verified snapshot, set by ``load``
    gateway_keys: tuple[bytes, ...] = ()  # likewise

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def gateway_key_map(self) -> dict[bytes, bytes]:
        """Receipt keys (key id -> public key) for ``wire.receipt.parse_receipt``."""
        return {key_id(k): k for k in self.gateway_keys}

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: bytes | None = None) -> ProvisioningBundle:
        p = Path(path)
        try:
            raw = (p / PROVISIONING).read_bytes()[: _MAX_JSON + 1]
        except OSError as e:
            raise BundleError("provisioning.json cannot be read", path=str(p)) from e
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise BundleError("provisioning.json is not JSON", path=str(p)) from e
        if not isinstance(body, dict):
            raise BundleError("provisioning.json must be an object", path=str(p))
        if body.get("v") != 1:
            raise BundleError("provisioning.json has an unknown version", field="v")
        role = body.get("role")
        if role not in ("tablet", "station", "web"):
            raise BundleError("provisioning.json role must be 'tablet', 'station' or 'web'", field="role")
        expected = _COMMON | _TABLET_ONLY if role == "tablet" else _COMMON
        if set(body) != expected:
            missing, extra = sorted(expected - set(body)), sorted(set(body) - expected)
            raise BundleError("provisioning.json has the wrong members", missing=missing, extra=extra)
        device_id = _member(body, "device_id", 64)
        try:
            check_device_id(device_id)
        except WireError as e:
            raise BundleError("provisioning.json device_id is not a valid device id", field="device_id") from e
        tablet = role == "tablet"
        signing_key = load_signing_key(p / DEVICE_KEY, passphrase)
        bundle = cls(
            path=p,
            role=role,
            device_id=device_id,
            key_id=_hex("key_id", body["key_id"], 16),
            signing_key=signing_key,
            gateway_url=check_gateway_url(body["gateway_url"]),
            root_public_key=_hex("root_public_key", body["root_public_key"], 32),
            usb_serial=_member(body, "usb_serial", 128) if tablet else None,
            institution=_member(body, "institution", 64) if tablet else None,
            worker_id=_member(body, "worker_id", 64) if tablet else None,
            census=_census(body["census"]) if tablet else None,
            ca_cert_path=p / CA_CERT,
            snapshot=_read(p / SNAPSHOT),
        )
        return bundle._with_snapshot_keys()

    def _with_snapshot_keys(self) -> ProvisioningBundle:
        """Check the bundle's parts agree; the data and gateway keys are the root-verified snapshot's."""
        if self.key_id != key_id(self.public_key):
            raise BundleError("key_id does not match device.key", field="key_id")
        try:
            load_cert(self.ca_cert_path)
        except KeysError as e:
            raise BundleError("ca.crt is missing or not a certificate", field="ca.crt") from e
        try:
            # now_ms=0: signature and structure only; a bundle may sit on a shelf past expiry.
            snap = accept_snapshot(self.snapshot, self.root_public_key, now_ms=0)
            listed: TabletEntry | StationEntry | WebServiceEntry
            if self.role == "tablet":
                listed = snap.tablet(self.device_id)
            elif self.role == "web":
                listed = snap.web_service(self.device_id)
            else:
                listed = snap.station(self.device_id)
        except WireError as e:
            raise BundleError(f"registry.snapshot does not verify or lacks this device ({e.code})",
                              field="registry.snapshot") from e
        if listed.public_key != self.public_key:
            raise BundleError("registry.snapshot lists another key for this device", field="registry.snapshot")
        if isinstance(listed, TabletEntry):
            for name in ("usb_serial", "institution", "worker_id"):
                if getattr(self, name) != getattr(listed, name):
                    raise BundleError(f"{name} differs from the registry snapshot", field=name)
        return dataclasses.replace(
            self,
            data_public_key=snap.data_key.public_key,
            gateway_keys=tuple(k.public_key for k in snap.gateway_keys),
        )


def _census(value: object) -> CensusMoment:
    if not isinstance(value, dict) or set(value) != {"date", "utc_offset_minutes"}:
        raise BundleError("provisioning.json census must be {date, utc_offset_minutes}", field="census")
    offset = value["utc_offset_minutes"]
    try:
        if type(offset) is not int:
            raise ValueError("utc_offset_minutes must be an integer")
        return CensusMoment.parse(value["date"], offset)
    except ValueError as e:
        raise BundleError(f"provisioning.json census is invalid: {e}", field="census") from e


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path.name} cannot be read", path=str(path)) from e
