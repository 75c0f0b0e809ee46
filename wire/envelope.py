"""The batch envelope: a signed header, a sealed body, one Ed25519 signature.

Byte layout (all integers big-endian; ``docs/protocol.md`` section "Batch envelope")::

    magic            4   "SNQB"
    version          1   0x01
    device_id_len    1   1..64
    device_id        n   ASCII, [A-Za-z0-9][A-Za-z0-9._-]*
    seq              8   1..2**53-1
    sealed_at_ms     8   1..2**53-1, Unix time in milliseconds, tablet clock
    record_count     4   1..max_records_per_batch
    schema_len       1   1..32
    schema           n   ASCII, [a-z0-9][a-z0-9./-]*   e.g. "census-sheet/1"
    recipient_key_id 16  key id of the X25519 data key the body is sealed to
    ciphertext_hash  32  SHA-256 of the ciphertext
    ciphertext_len   4
    ciphertext       n   crypto_box_seal(plaintext, data key)
    signature        64  Ed25519 by the device key over
                         "sanaq-sync/v1/batch" || 0x00 || bytes[0 : start of ciphertext]

The plaintext is canonical JSON ``{"device_id":..,"seq":..,"sheets":[..],"v":1}``;
opening checks it repeats the header's device id and seq and holds exactly
``record_count`` sheets, so a body cannot be re-sealed under another header.

Verification needs only the device public key (a station verifies without the
data key); ``open_envelope`` takes only a ``VerifiedEnvelope``, so nothing is
decrypted before its signature and hash are checked.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from . import _ed25519, canonical, sealing
from ._binary import Reader
from .errors import (
    BindingError,
    DecodeError,
    HashMismatchError,
    OversizeError,
    UnsupportedVersionError,
    WrongRecipientError,
)
from .keyids import KEY_ID_LEN, key_id
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "MAGIC",
    "VERSION",
    "BatchHeader",
    "Envelope",
    "OpenedBatch",
    "VerifiedEnvelope",
    "check_device_id",
    "decode_envelope",
    "open_batch",
    "open_envelope",
    "seal_batch",
    "verify_envelope",
]

MAGIC = b"SNQB"
VERSION = 1
SIGN_LABEL = b"sanaq-sync/v1/batch\x00"
# 2**53-1, not 2**63-1: seq and times also travel in canonical JSON (body, receipts,
# sync state), which caps integers there; a larger seq could verify but never be receipted.
MAX_SEQ = canonical.MAX_SAFE_INT
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SCHEMA = re.compile(r"[a-z0-9][a-z0-9./-]{0,31}")


def check_device_id(device_id: object) -> str:
    """Return ``device_id`` if it matches the protocol's pattern, else ``DecodeError``."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise DecodeError("device id does not match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    return device_id


@dataclass(frozen=True, slots=True)
class BatchHeader:
    device_id: str
    seq: int
    sealed_at_ms: int
    record_count: int
    schema: str
    recipient_key_id: bytes
    ciphertext_hash: bytes
    ciphertext_len: int

    def encode(self) -> bytes:
        dev = self.device_id.encode("ascii")
        sch = self.schema.encode("ascii")
        return b"".join(
            [
                MAGIC,
                bytes([VERSION, len(dev)]),
                dev,
                struct.pack(">QQI", self.seq, self.sealed_at_ms, self.record_count),
                bytes([len(sch)]),
                sch,
                self.recipient_key_id,
                self.ciphertext_hash,
                struct.pack(">I", self.ciphertext_len),
            ]
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A structurally valid envelope; not yet verified."""

    header: BatchHeader
    ciphertext: bytes
    signature: bytes
    raw: bytes

    @property
    def batch_hash(self) -> bytes:
        """SHA-256 of the whole envelope: the batch's identity in receipts."""
        return hashlib.sha256(self.raw).digest()

    @property
    def signed_part(self) -> bytes:
        return self.raw[: len(self.raw) - len(self.ciphertext) - _ed25519.SIGNATURE_LEN]


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """An envelope whose signature and ciphertext hash have been checked."""

    envelope: Envelope
    signer_key_id: bytes

    @property
    def header(self) -> BatchHeader:
        return self.envelope.header


def _validate_header_fields(h: BatchHeader, limits: Limits) -> None:
    check_device_id(h.device_id)
    if not 1 <= h.seq <= MAX_SEQ:
        raise DecodeError("seq out of range", device_id=h.device_id, seq=h.seq)
    if not 0 < h.sealed_at_ms <= MAX_SEQ:
        raise DecodeError("sealed_at out of range", device_id=h.device_id, seq=h.seq)
    if h.record_count < 1:
        raise DecodeError("record count is zero", device_id=h.device_id, seq=h.seq)
    if h.record_count > limits.max_records_per_batch:
        raise OversizeError("record count above the limit", device_id=h.device_id, seq=h.seq)
    if not _SCHEMA.fullmatch(h.schema):
        raise DecodeError("schema name malformed", device_id=h.device_id, seq=h.seq)
    if h.ciphertext_len > limits.max_ciphertext_bytes:
        raise OversizeError("ciphertext too large", device_id=h.device_id, seq=h.seq)
    if h.ciphertext_len < sealing.SEAL_OVERHEAD:
        raise DecodeError("ciphertext too short", device_id=h.device_id, seq=h.seq)


def decode_envelope(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Parse the layout strictly. No cryptography runs here."""
    if len(data) > limits.max_envelope_bytes:
        raise OversizeError("envelope too large", size=len(data), limit=limits.max_envelope_bytes)
    r = Reader(data, "envelope")
    if r.take(4) != MAGIC:
        raise DecodeError("not a batch envelope (bad magic)")
    version = r.u8()
    if version != VERSION:
        raise UnsupportedVersionError("unsupported envelope version", version=version)
    dev_len = r.u8()
    if not 1 <= dev_len <= 64:
        raise DecodeError("device id length out of range")
    try:
        device_id = r.take(dev_len).decode("ascii")
    except UnicodeDecodeError as e:
        raise DecodeError("device id is not ASCII") from e
    seq, sealed_at_ms, record_count = r.u64(), r.u64(), r.u32()
    sch_len = r.u8()
    if not 1 <= sch_len <= 32:
        raise DecodeError("schema length out of range")
    try:
        schema = r.take(sch_len).decode("ascii")
    except UnicodeDecodeError as e:
        raise DecodeError("schema is not ASCII") from e
    header = BatchHeader(
        device_id=device_id,
        seq=seq,
        sealed_at_ms=sealed_at_ms,
        record_count=record_count,
        schema=schema,
        recipient_key_id=r.take(KEY_ID_LEN),
        ciphertext_hash=r.take(32),
        ciphertext_len=r.u32(),
    )
    _validate_header_fields(header, limits)
    ciphertext = r.take(header.ciphertext_len)
    signature = r.take(_ed25519.SIGNATURE_LEN)
    r.end()
    return Envelope(header=header, ciphertext=ciphertext, signature=signature, raw=bytes(data))


def verify_envelope(envelope: Envelope, device_public_key: bytes) -> VerifiedEnvelope:
    """Check the ciphertext hash and the device signature (public keys only)."""
    h = envelope.header
    if hashlib.sha256(envelope.ciphertext).digest() != h.ciphertext_hash:
        raise HashMismatchError("ciphertext hash mismatch", device_id=h.device_id, seq=h.seq)
    _ed25519.verify(
        device_public_key,
        SIGN_LABEL + envelope.signed_part,
        envelope.signature,
        "batch",
        device_id=h.device_id,
        seq=h.seq,
    )
    return VerifiedEnvelope(envelope=envelope, signer_key_id=key_id(device_public_key))


def _plaintext(device_id: str, seq: int, sheets: list[Any]) -> bytes:
    return canonical.encode({"device_id": device_id, "seq": seq, "sheets": sheets, "v": 1})


def seal_batch(
    *,
    device_id: str,
    seq: int,
    sheets: list[Any],
    sealed_at_ms: int,
    device_key: SigningKey,
    data_public_key: bytes,
    ephemeral_secret: bytes,
    schema: str = "census-sheet/1",
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Seal and sign a batch; returns the envelope bytes. Deterministic in its inputs."""
    plaintext = _plaintext(device_id, seq, sheets)
    ciphertext = sealing.seal(plaintext, data_public_key, ephemeral_secret)
    header = BatchHeader(
        device_id=device_id,
        seq=seq,
        sealed_at_ms=sealed_at_ms,
        record_count=len(sheets),
        schema=schema,
        recipient_key_id=key_id(data_public_key),
        ciphertext_hash=hashlib.sha256(ciphertext).digest(),
        ciphertext_len=len(ciphertext),
    )
    _validate_header_fields(header, limits)
    signed = header.encode()
    signature = _ed25519.sign(device_key, SIGN_LABEL + signed)
    return signed + ciphertext + signature


@dataclass(frozen=True, slots=True)
class OpenedBatch:
    """The sheets of an opened envelope and the canonical JSON bytes of each, as they were sealed."""

    sheets: list[Any]
    sheet_bytes: list[bytes]


def open_envelope(
    verified: VerifiedEnvelope,
    data_public_key: bytes,
    data_secret_key: bytes,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Any]:
    """Decrypt a verified envelope and check the body's binding to the header.

    Returns the sheets (still untrusted JSON values, validated by the caller
    against the sheet schema).
    """
    return _open_body(verified, data_public_key, data_secret_key, limits)[1]


def open_batch(
    verified: VerifiedEnvelope,
    data_public_key: bytes,
    data_secret_key: bytes,
    limits: Limits = DEFAULT_LIMITS,
) -> OpenedBatch:
    """``open_envelope``, plus each sheet's canonical bytes (cut from the plaintext, not encoded again).

    The parts are checked: the body rebuilt from them is the plaintext, byte for byte.
    """
    plaintext, sheets = _open_body(verified, data_public_key, data_secret_key, limits)
    parts = canonical.encode_decoded(sheets)
    h = verified.header
    if _plaintext_of_parts(h.device_id, h.seq, parts) != plaintext:
        raise DecodeError("batch body does not split into its sheets", device_id=h.device_id, seq=h.seq)
    return OpenedBatch(sheets=sheets, sheet_bytes=parts)


def _plaintext_of_parts(device_id: str, seq: int, parts: list[bytes]) -> bytes:
    head = canonical.encode({"device_id": device_id, "seq": seq, "sheets": []})[:-3]  # drop the closing '[]}'
    return head + b"[" + b",".join(parts) + b'],"v":1}'


def _open_body(
    verified: VerifiedEnvelope, data_public_key: bytes, data_secret_key: bytes, limits: Limits
) -> tuple[bytes, list[Any]]:
    h = verified.header
    if h.recipient_key_id != key_id(data_public_key):
        raise WrongRecipientError("sealed to another data key", device_id=h.device_id, seq=h.seq)
    plaintext = sealing.open_sealed(verified.envelope.ciphertext, data_public_key, data_secret_key)
    body = canonical.decode(plaintext, max_bytes=limits.max_ciphertext_bytes, max_depth=limits.max_json_depth)
    if not isinstance(body, dict) or set(body) != {"device_id", "seq", "sheets", "v"}:
        raise DecodeError("batch body has the wrong members", device_id=h.device_id, seq=h.seq)
    # ``type(..) is int``: in Python ``True == 1``, and the JSON value true is not the integer 1.
    if type(body["v"]) is not int or body["v"] != 1:
        raise UnsupportedVersionError("unsupported batch body version", device_id=h.device_id, seq=h.seq)
    if body["device_id"] != h.device_id or type(body["seq"]) is not int or body["seq"] != h.seq:
        raise BindingError("sealed body names another device or seq", device_id=h.device_id, seq=h.seq)
    sheets = body["sheets"]
    if not isinstance(sheets, list) or len(sheets) != h.record_count:
        raise BindingError("sheet count differs from the header", device_id=h.device_id, seq=h.seq)
    return plaintext, sheets
