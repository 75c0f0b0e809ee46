"""Enrollment: a new device key, its registry row, a fresh snapshot, and the provisioning bundle.

Order matters: everything that can be refused (output directory present, bad
URL, wrong authority passphrase, duplicate id, invalid fields) is refused
before the registry changes. After the registry commit a new snapshot is
published and the bundle is written whole (staging directory + rename). If
that last write fails, the device stays enrolled with a key nobody holds;
the error says so and the operator revokes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric import ed25519
from nacl.signing import SigningKey

from wire.census_sheet import FOUNDING_ORDER_MOMENT, CensusMoment

from .authority import DEFAULT_SNAPSHOT_VALIDITY_MS, Authority
from .bundle import (
    CA_CERT,
    DEVICE_KEY,
    PROVISIONING,
    SNAPSHOT,
    ProvisioningBundle,
    check_gateway_url,
    provisioning_json,
    write_bundle_dir,
)
from .errors import BundleError, KeysError
from .files import PRIVATE_MODE, PUBLIC_MODE, serialize_private_key
from .records import check_id

__all__ = ["enroll_station", "enroll_tablet", "enroll_web"]

_log = structlog.get_logger("keys.enrollment")


def _prepare(authority: Authority, out: Path, gateway_url: str, subject_id: str) -> None:
    check_gateway_url(gateway_url)
    if out.exists():
        raise BundleError("output directory already exists", path=str(out))
    if not out.parent.is_dir():
        raise BundleError("parent of the output directory does not exist", path=str(out.parent))
    authority.root_signing_key()  # a wrong passphrase fails here, before the registry changes


def _private_pem(key: SigningKey, passphrase: bytes | None) -> bytes:
    return serialize_private_key(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key)), passphrase)


def _write(
    authority: Authority, out: Path, *, subject_id: str, key_pem: bytes, provisioning: bytes, snapshot: bytes,
    bundle_passphrase: bytes | None,
) -> ProvisioningBundle:
    try:
        write_bundle_dir(out, {
            DEVICE_KEY: (key_pem, PRIVATE_MODE),
            PROVISIONING: (provisioning, PUBLIC_MODE),
            CA_CERT: (authority.ca_cert_path.read_bytes(), PUBLIC_MODE),
            SNAPSHOT: (snapshot, PUBLIC_MODE),
        })
    except (KeysError, OSError) as e:
        raise BundleError("device enrolled but its bundle could not be written; revoke it and enroll again",
                          id=subject_id, path=str(out)) from e
    return ProvisioningBundle.load(out, bundle_passphrase)


def enroll_tablet(
    authority: Authority,
    out_dir: str | os.PathLike[str],
    *,
    device_id: str,
    usb_serial: str,
    institution: str,
    worker_id: str,
    gateway_url: str,
    now_ms: int,
    worker_name: str | None = None,
    act_no: str | None = None,
    bundle_passphrase: bytes | None = None,
    validity_ms: int = DEFAULT_SNAPSHOT_VALIDITY_MS,
    census: CensusMoment = FOUNDING_ORDER_MOMENT,
) -> ProvisioningBundle:
    """Enroll a tablet issued to ``worker_id`` and write its bundle to ``out_dir`` (must not exist).

    ``census`` is the census moment the tablet's sheets refer to (provisioning.json ``census``).
    """
    out = Path(out_dir)
    check_id(device_id, "device_id")
    _prepare(authority, out, gateway_url, device_id)
    key = SigningKey.generate()
    key_pem = _private_pem(key, bundle_passphrase)
    record = authority.registry.enroll_tablet(
        device_id=device_id, public_key=bytes(key.verify_key), usb_serial=usb_serial, institution=institution,
        worker_id=worker_id, now_ms=now_ms, worker_name=worker_name, act_no=act_no,
    )
    snapshot = authority.publish(now_ms=now_ms, validity_ms=validity_ms)
    provisioning = provisioning_json(
        role="tablet", device_id=device_id, public_key=record.public_key, gateway_url=gateway_url,
        root_public_key=authority.root_public_key, usb_serial=record.usb_serial,
        institution=record.institution, worker_id=record.worker_id, census=census,
    )
    bundle = _write(authority, out, subject_id=device_id, key_pem=key_pem, provisioning=provisioning,
                    snapshot=snapshot, bundle_passphrase=bundle_passphrase)
    _log.info("enrollment.tablet.bundle_written", device_id=device_id, key_id=record.key_id.hex())
    return bundle


def enroll_station(
    authority: Authority,
    out_dir: str | os.PathLike[str],
    *,
    station_id: str,
    gateway_url: str,
    now_ms: int,
    location: str | None = None,
    bundle_passphrase: bytes | None = None,
    validity_ms: int = DEFAULT_SNAPSHOT_VALIDITY_MS,
    role: str = "usb",
) -> ProvisioningBundle:
    """Enroll a USB ingest station (or, ``role="web"``, a self-enumeration web service) and write its bundle."""
    out = Path(out_dir)
    check_id(station_id, "station_id")
    _prepare(authority, out, gateway_url, station_id)
    key = SigningKey.generate()
    key_pem = _private_pem(key, bundle_passphrase)
    record = authority.registry.enroll_station(
        station_id=station_id, public_key=bytes(key.verify_key), now_ms=now_ms, location=location, role=role
    )
    snapshot = authority.publish(now_ms=now_ms, validity_ms=validity_ms)
    provisioning = provisioning_json(
        role="web" if role == "web" else "station", device_id=station_id, public_key=record.public_key,
        gateway_url=gateway_url, root_public_key=authority.root_public_key,
    )
    bundle = _write(authority, out, subject_id=station_id, key_pem=key_pem, provisioning=provisioning,
                    snapshot=snapshot, bundle_passphrase=bundle_passphrase)
    _log.info("enrollment.station.bundle_written", station_id=station_id, role=role, key_id=record.key_id.hex())
    return bundle


def enroll_web(
    authority: Authority,
    out_dir: str | os.PathLike[str],
    *,
    web_id: str,
    gateway_url: str,
    now_ms: int,
    location: str | None = None,
    bundle_passphrase: bytes | None = None,
    validity_ms: int = DEFAULT_SNAPSHOT_VALIDITY_MS,
) -> ProvisioningBundle:
    """Enroll a self-enumeration web service (road ``web:<web_id>``) and write its bundle."""
    return enroll_station(authority, out_dir, station_id=web_id, gateway_url=gateway_url, now_ms=now_ms,
                          location=location, bundle_passphrase=bundle_passphrase, validity_ms=validity_ms,
                          role="web")
