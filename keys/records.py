"""Registry records as frozen dataclasses, and the field checks applied before anything is stored.

``TabletRecord`` is the authority's full view (it includes ``worker_name`` and
the acceptance-transfer ``act_no``, which never leave the authority); the
snapshot carries only the ``wire.snapshot.TabletEntry`` subset.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from wire.envelope import check_device_id
from wire.errors import DecodeError

from .errors import InvalidRecordError

__all__ = [
    "CertificateKeyRecord",
    "SnapshotRecord",
    "StationRecord",
    "StatusEvent",
    "TabletRecord",
    "certificate_key_from_row",
    "check_id",
    "check_text",
    "station_from_row",
    "tablet_from_row",
]


@dataclass(frozen=True, slots=True)
class TabletRecord:
    device_id: str
    public_key: bytes
    key_id: bytes
    usb_serial: str
    institution: str
    worker_id: str
    worker_name: str | None
    act_no: str | None
    issued_at_ms: int
    returned_at_ms: int | None
    status: str
    status_changed_at_ms: int
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "public_key": self.public_key.hex(),
            "key_id": self.key_id.hex(),
            "usb_serial": self.usb_serial,
            "institution": self.institution,
            "worker_id": self.worker_id,
            "worker_name": self.worker_name,
            "act_no": self.act_no,
            "issued_at_ms": self.issued_at_ms,
            "returned_at_ms": self.returned_at_ms,
            "status": self.status,
            "status_changed_at_ms": self.status_changed_at_ms,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class StationRecord:
    station_id: str
    public_key: bytes
    key_id: bytes
    location: str | None
    enrolled_at_ms: int
    status: str
    status_changed_at_ms: int
    reason: str | None
    role: str = "usb"

    def to_json(self) -> dict[str, Any]:
        return {
            "station_id": self.station_id,
            "role": self.role,
            "public_key": self.public_key.hex(),
            "key_id": self.key_id.hex(),
            "location": self.location,
            "enrolled_at_ms": self.enrolled_at_ms,
            "status": self.status,
            "status_changed_at_ms": self.status_changed_at_ms,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    version: int
    published_at_ms: int
    expires_at_ms: int
    sha256: str


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One row of the audit trail; ``evidence`` is the sync state that proved a return."""

    id: int
    subject_id: str
    subject_kind: str
    from_status: str | None
    to_status: str
    at_ms: int
    reason: str | None
    evidence: bytes | None


def check_id(value: str, field: str) -> str:
    """A device or station id must match the protocol's device id pattern."""
    try:
        return check_device_id(value)
    except DecodeError as e:
        raise InvalidRecordError(f"{field} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}", field=field) from e


def check_text(value: str, field: str, max_len: int) -> str:
    """Non-empty after stripping, at most ``max_len`` characters, no control characters."""
    if not isinstance(value, str):
        raise InvalidRecordError(f"{field} must be text", field=field)
    value = value.strip()
    if not value or len(value) > max_len:
        raise InvalidRecordError(f"{field} must be 1..{max_len} characters", field=field)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidRecordError(f"{field} must not contain control characters", field=field)
    return value


def tablet_from_row(r: sqlite3.Row) -> TabletRecord:
    return TabletRecord(
        device_id=r["device_id"],
        public_key=bytes.fromhex(r["public_key"]),
        key_id=bytes.fromhex(r["key_id"]),
        usb_serial=r["usb_serial"],
        institution=r["institution"],
        worker_id=r["worker_id"],
        worker_name=r["worker_name"],
        act_no=r["act_no"],
        issued_at_ms=r["issued_at_ms"],
        returned_at_ms=r["returned_at_ms"],
        status=r["status"],
        status_changed_at_ms=r["status_changed_at_ms"],
        reason=r["reason"],
    )


def station_from_row(r: sqlite3.Row) -> StationRecord:
    return StationRecord(
        station_id=r["station_id"],
        public_key=bytes.fromhex(r["public_key"]),
        key_id=bytes.fromhex(r["key_id"]),
        location=r["location"],
        enrolled_at_ms=r["enrolled_at_ms"],
        status=r["status"],
        status_changed_at_ms=r["status_changed_at_ms"],
        reason=r["reason"],
        role=r["role"],
    )


@dataclass(frozen=True, slots=True)
class CertificateKeyRecord:
    key_id: str
    issuer: str
    census: str
    created_at_ms: int
    status: str  # active | retired | revoked
    status_changed_at_ms: int
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id, "issuer": self.issuer, "census": self.census,
            "created_at_ms": self.created_at_ms, "status": self.status,
            "status_changed_at_ms": self.status_changed_at_ms, "reason": self.reason,
        }


def certificate_key_from_row(r: sqlite3.Row) -> CertificateKeyRecord:
    return CertificateKeyRecord(r["key_id"], r["issuer"], r["census"], r["created_at_ms"], r["status"],
                                r["status_changed_at_ms"], r["reason"])
