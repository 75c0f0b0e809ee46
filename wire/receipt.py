"""Receipts: the gateway's signed statement that a batch is durably stored.

Body members (canonical JSON, ``docs/protocol.md`` section "Receipt")::

    v                   1
    batch_hash          hex SHA-256 of the whole envelope
    device_id           device that sealed the batch
    seq                 its sequence number
    received_at_ms      server receive time: the sync date-and-time mark
    road                "online", "station:<station id>" or "web:<web service id>"
    sheets_accepted     sheets stored as valid
    sheets_quarantined  sheets kept in quarantine with a reason

A tablet deletes a batch only after verifying a receipt whose ``batch_hash``
equals the hash of the envelope it holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nacl.signing import SigningKey

from . import _fields as f
from .documents import DocKind, decode_document, sign_document, verify_document
from .envelope import check_device_id
from .errors import DecodeError
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["Receipt", "make_receipt", "parse_receipt"]

_ROAD = re.compile(r"online|(?:station|web):[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MEMBERS = {"v", "batch_hash", "device_id", "seq", "received_at_ms", "road", "sheets_accepted", "sheets_quarantined"}
_MAX_RECEIPT_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Receipt:
    batch_hash: bytes
    device_id: str
    seq: int
    received_at_ms: int
    road: str
    sheets_accepted: int
    sheets_quarantined: int
    signer_key_id: bytes
    raw: bytes


def make_receipt(
    *,
    batch_hash: bytes,
    device_id: str,
    seq: int,
    received_at_ms: int,
    road: str,
    sheets_accepted: int,
    sheets_quarantined: int,
    gateway_key: SigningKey,
) -> bytes:
    if not _ROAD.fullmatch(road):
        raise ValueError(f"bad road {road!r}")
    body = {
        "v": 1,
        "batch_hash": batch_hash.hex(),
        "device_id": device_id,
        "seq": seq,
        "received_at_ms": received_at_ms,
        "road": road,
        "sheets_accepted": sheets_accepted,
        "sheets_quarantined": sheets_quarantined,
    }
    return sign_document(DocKind.RECEIPT, body, gateway_key)


def parse_receipt(data: bytes, gateway_keys: dict[bytes, bytes], limits: Limits = DEFAULT_LIMITS) -> Receipt:
    """Decode and verify a receipt against the trusted gateway receipt keys."""
    doc = decode_document(data, DocKind.RECEIPT, limits, max_bytes=_MAX_RECEIPT_BYTES)
    verify_document(doc, gateway_keys)
    body = f.exact_members(doc.body, _MEMBERS, "receipt")
    road = f.get_str(body, "road", max_len=72)
    if not _ROAD.fullmatch(road):
        raise DecodeError("receipt road malformed")
    return Receipt(
        batch_hash=f.get_hex(body, "batch_hash", 32),
        device_id=check_device_id(body["device_id"]),
        seq=f.get_int(body, "seq", minimum=1),
        received_at_ms=f.get_int(body, "received_at_ms", minimum=1),
        road=road,
        sheets_accepted=f.get_int(body, "sheets_accepted"),
        sheets_quarantined=f.get_int(body, "sheets_quarantined"),
        signer_key_id=doc.signer_key_id,
        raw=doc.raw,
    )
