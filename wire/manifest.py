"""The USB export volume: its fixed names, the tablet-signed manifest, the station custody record.

Volume layout (``docs/protocol.md`` section "USB export volume")::

    FAT12/16/32 volume, label "SANAQEXPORT"
    /SANAQ/MANIFEST.SQM      signed document of kind manifest (tablet key)
    /SANAQ/NNNNNNNN.SQB      one batch envelope per file, NNNNNNNN = seq, 8 decimal digits

Manifest body: ``v``, ``device_id``, ``usb_serial``, ``created_at_ms``,
``batches`` = [{``file``, ``seq``, ``size``, ``sha256``}] in ascending seq,
each ``file`` exactly the name derived from its ``seq``.

Custody body (station key): ``v``, ``station_id``, ``device_id``,
``pulled_at_ms``, ``manifest_sha256``, ``batches`` = [{``seq``,
``batch_hash``}] in strictly ascending seq, ``usb`` = {``vendor_id``, ``product_id``, ``serial``}: the
USB identifiers the station saw, recorded as hints, never as proof. A *recovery* record (a pull the
station's process did not finish, ADR 0007) also has ``recovery`` = {``reason``: "pull-interrupted",
``recovered_at_ms``}; a record of a finished pull has no ``recovery`` member.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nacl.signing import SigningKey

from . import _fields as f
from .documents import DocKind, decode_document, sign_document, verify_document
from .envelope import check_device_id
from .errors import DecodeError
from .keyids import key_id
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "BATCH_NAME",
    "EXPORT_DIR",
    "MANIFEST_NAME",
    "VOLUME_LABEL",
    "CUSTODY_RECOVERY_REASON",
    "CustodyRecord",
    "Manifest",
    "ManifestEntry",
    "UsbHints",
    "batch_file_name",
    "make_custody",
    "make_manifest",
    "parse_custody",
    "parse_manifest",
    "peek_manifest_signer",
]

VOLUME_LABEL = "SANAQEXPORT"
EXPORT_DIR = "SANAQ"
MANIFEST_NAME = "MANIFEST.SQM"
BATCH_NAME = re.compile(r"([0-9]{8})\.SQB")
MAX_USB_SEQ = 99_999_999


def batch_file_name(seq: int) -> str:
    if not 1 <= seq <= MAX_USB_SEQ:
        raise ValueError("seq cannot be written to a USB volume")
    return f"{seq:08d}.SQB"


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    file: str
    seq: int
    size: int
    sha256: bytes


@dataclass(frozen=True, slots=True)
class Manifest:
    device_id: str
    usb_serial: str
    created_at_ms: int
    batches: tuple[ManifestEntry, ...]
    signer_key_id: bytes
    raw: bytes


def make_manifest(
    *, device_id: str, usb_serial: str, created_at_ms: int, batches: list[ManifestEntry], device_key: SigningKey
) -> bytes:
    body = {
        "v": 1,
        "device_id": device_id,
        "usb_serial": usb_serial,
        "created_at_ms": created_at_ms,
        "batches": [
            {"file": b.file, "seq": b.seq, "size": b.size, "sha256": b.sha256.hex()}
            for b in sorted(batches, key=lambda b: b.seq)
        ],
    }
    return sign_document(DocKind.MANIFEST, body, device_key)


def peek_manifest_signer(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, bytes]:
    """The claimed (device id, signer key id) of a manifest, unverified, to pick the key to verify with."""
    doc = decode_document(data, DocKind.MANIFEST, limits, max_bytes=limits.max_manifest_bytes)
    if not isinstance(doc.body.get("device_id"), str):
        raise DecodeError("manifest names no device")
    return check_device_id(doc.body["device_id"]), doc.signer_key_id


def parse_manifest(data: bytes, device_public_key: bytes, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Decode, verify against the device key, and check the entry rules."""
    doc = decode_document(data, DocKind.MANIFEST, limits, max_bytes=limits.max_manifest_bytes)
    verify_document(doc, {key_id(device_public_key): device_public_key})
    body = f.exact_members(doc.body, {"v", "device_id", "usb_serial", "created_at_ms", "batches"}, "manifest")
    entries: list[ManifestEntry] = []
    last = 0
    for raw in f.get_list(body, "batches", max_items=limits.max_manifest_batches):
        e = f.exact_members(raw, {"file", "seq", "size", "sha256"}, "manifest entry")
        seq = f.get_int(e, "seq", minimum=1, maximum=MAX_USB_SEQ)
        name = f.get_str(e, "file", max_len=12)
        if name != batch_file_name(seq):
            raise DecodeError("manifest file name does not match its seq", seq=seq)
        if seq <= last:
            raise DecodeError("manifest entries not in strictly ascending seq", seq=seq)
        last = seq
        size = f.get_int(e, "size", minimum=1, maximum=limits.max_envelope_bytes)
        entries.append(ManifestEntry(name, seq, size, f.get_hex(e, "sha256", 32)))
    return Manifest(
        device_id=check_device_id(body["device_id"]),
        usb_serial=f.get_str(body, "usb_serial", max_len=128),
        created_at_ms=f.get_int(body, "created_at_ms"),
        batches=tuple(entries),
        signer_key_id=doc.signer_key_id,
        raw=doc.raw,
    )


@dataclass(frozen=True, slots=True)
class UsbHints:
    vendor_id: str
    product_id: str
    serial: str


@dataclass(frozen=True, slots=True)
class CustodyRecord:
    station_id: str
    device_id: str
    pulled_at_ms: int
    manifest_sha256: bytes
    batches: tuple[tuple[int, bytes], ...]
    usb: UsbHints
    signer_key_id: bytes
    raw: bytes
    recovered_at_ms: int | None = None  # set on a recovery record (``recovery`` member); None for a finished pull

    @property
    def is_recovery(self) -> bool:
        return self.recovered_at_ms is not None


CUSTODY_RECOVERY_REASON = "pull-interrupted"


def make_custody(
    *,
    station_id: str,
    device_id: str,
    pulled_at_ms: int,
    manifest_sha256: bytes,
    batches: list[tuple[int, bytes]],
    usb: UsbHints,
    station_key: SigningKey,
    recovered_at_ms: int | None = None,
) -> bytes:
    """A custody record; with ``recovered_at_ms`` a recovery record for an interrupted pull."""
    ordered = sorted(batches)
    if len({s for s, _ in ordered}) != len(ordered):
        raise ValueError("custody record lists a seq twice")
    body = {
        "v": 1,
        "station_id": station_id,
        "device_id": device_id,
        "pulled_at_ms": pulled_at_ms,
        "manifest_sha256": manifest_sha256.hex(),
        "batches": [{"seq": s, "batch_hash": h.hex()} for s, h in ordered],
        "usb": {"vendor_id": usb.vendor_id, "product_id": usb.product_id, "serial": usb.serial},
    }
    if recovered_at_ms is not None:
        body["recovery"] = {"reason": CUSTODY_RECOVERY_REASON, "recovered_at_ms": recovered_at_ms}
    return sign_document(DocKind.CUSTODY, body, station_key)


def parse_custody(data: bytes, station_public_key: bytes, limits: Limits = DEFAULT_LIMITS) -> CustodyRecord:
    doc = decode_document(data, DocKind.CUSTODY, limits)
    verify_document(doc, {key_id(station_public_key): station_public_key})
    members = {"v", "station_id", "device_id", "pulled_at_ms", "manifest_sha256", "batches", "usb"}
    if isinstance(doc.body, dict) and "recovery" in doc.body:
        members.add("recovery")
    body = f.exact_members(doc.body, members, "custody record")
    recovered_at_ms = None
    if "recovery" in body:
        recovery = f.exact_members(body["recovery"], {"reason", "recovered_at_ms"}, "custody recovery")
        if f.get_str(recovery, "reason", max_len=32) != CUSTODY_RECOVERY_REASON:
            raise DecodeError("custody recovery with an unknown reason")
        recovered_at_ms = f.get_int(recovery, "recovered_at_ms")
    usb = f.exact_members(body["usb"], {"vendor_id", "product_id", "serial"}, "custody usb")
    batches: list[tuple[int, bytes]] = []
    for raw in f.get_list(body, "batches", max_items=limits.max_manifest_batches):
        e = f.exact_members(raw, {"seq", "batch_hash"}, "custody entry")
        seq = f.get_int(e, "seq", minimum=1)
        if batches and seq <= batches[-1][0]:
            raise DecodeError("custody entries not in strictly ascending seq", seq=seq)
        batches.append((seq, f.get_hex(e, "batch_hash", 32)))
    return CustodyRecord(
        station_id=check_device_id(body["station_id"]),
        device_id=check_device_id(body["device_id"]),
        pulled_at_ms=f.get_int(body, "pulled_at_ms"),
        manifest_sha256=f.get_hex(body, "manifest_sha256", 32),
        batches=tuple(batches),
        usb=UsbHints(
            f.get_str(usb, "vendor_id", max_len=16),
            f.get_str(usb, "product_id", max_len=16),
            f.get_str(usb, "serial", max_len=128),
        ),
        signer_key_id=doc.signer_key_id,
        raw=doc.raw,
        recovered_at_ms=recovered_at_ms,
    )
