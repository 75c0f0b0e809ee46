"""Signed documents: one container for receipts, snapshots, manifests, custody, sync state.

Byte layout (big-endian; ``docs/protocol.md`` section "Signed documents")::

    magic        4   kind: "SNQR" receipt, "SNQS" registry snapshot,
                           "SNQM" USB manifest, "SNQC" custody record,
                           "SNQY" sync state, "SNQW" access codes, "SNQA" assignments,
                           "SNQK" certificate key, "SNQP" participation certificate
    version      1   0x01
    signer_key   16  key id of the Ed25519 signing key
    body_len     4
    body         n   canonical JSON (see ``canonical``)
    signature    64  Ed25519 over "sanaq-sync/v1/" || label || 0x00 || bytes[0 : end of body]

The label differs per kind ("receipt", "snapshot", "manifest", "custody",
"sync-state", "access-codes", "assignments", "certificate-key", "certificate"), so a signature made for one
kind never verifies as another.
The signed bytes are exactly the bytes carried; nothing is re-serialised.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any

from nacl.signing import SigningKey

from . import _ed25519, canonical
from ._binary import Reader
from .errors import DecodeError, OversizeError, UnknownKeyError, UnsupportedVersionError
from .keyids import KEY_ID_LEN, key_id
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["DocKind", "SignedDocument", "decode_document", "sign_document", "verify_document"]

VERSION = 1


class DocKind(Enum):
    RECEIPT = (b"SNQR", "receipt")
    SNAPSHOT = (b"SNQS", "snapshot")
    MANIFEST = (b"SNQM", "manifest")
    CUSTODY = (b"SNQC", "custody")
    SYNC_STATE = (b"SNQY", "sync-state")
    ACCESS_CODES = (b"SNQW", "access-codes")
    ASSIGNMENTS = (b"SNQA", "assignments")
    CERTIFICATE_KEY = (b"SNQK", "certificate-key")
    CERTIFICATE = (b"SNQP", "certificate")

    @property
    def magic(self) -> bytes:
        return self.value[0]

    @property
    def label(self) -> bytes:
        return b"sanaq-sync/v1/" + self.value[1].encode("ascii") + b"\x00"


@dataclass(frozen=True, slots=True)
class SignedDocument:
    kind: DocKind
    signer_key_id: bytes
    body_bytes: bytes
    body: Any
    signature: bytes
    raw: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def signed_part(self) -> bytes:
        return self.raw[: -_ed25519.SIGNATURE_LEN]


def sign_document(kind: DocKind, body: Any, signing_key: SigningKey) -> bytes:
    body_bytes = canonical.encode(body)
    signer = key_id(bytes(signing_key.verify_key))
    head = kind.magic + bytes([VERSION]) + signer + struct.pack(">I", len(body_bytes))
    signed = head + body_bytes
    return signed + _ed25519.sign(signing_key, kind.label + signed)


def decode_document(
    data: bytes, kind: DocKind, limits: Limits = DEFAULT_LIMITS, *, max_bytes: int | None = None
) -> SignedDocument:
    """Parse the container strictly (magic, version, lengths, canonical body). No crypto."""
    cap = limits.max_document_bytes if max_bytes is None else max_bytes
    if len(data) > cap:
        raise OversizeError(f"{kind.value[1]} too large", size=len(data), limit=cap)
    r = Reader(data, kind.value[1])
    magic = r.take(4)
    if magic != kind.magic:
        raise DecodeError(f"not a {kind.value[1]} (bad magic)")
    version = r.u8()
    if version != VERSION:
        raise UnsupportedVersionError(f"unsupported {kind.value[1]} version", version=version)
    signer = r.take(KEY_ID_LEN)
    body_len = r.u32()
    if body_len > cap:
        raise OversizeError(f"{kind.value[1]} body too large", size=body_len, limit=cap)
    body_bytes = r.take(body_len)
    signature = r.take(_ed25519.SIGNATURE_LEN)
    r.end()
    body = canonical.decode(body_bytes, max_bytes=cap, max_depth=limits.max_json_depth)
    if not isinstance(body, dict):
        raise DecodeError(f"{kind.value[1]} body must be a JSON object")
    if type(body.get("v")) is not int or body["v"] != 1:  # JSON true is not 1
        raise UnsupportedVersionError(f"unsupported {kind.value[1]} body version")
    return SignedDocument(kind, signer, body_bytes, body, signature, bytes(data))


def verify_document(doc: SignedDocument, trusted: dict[bytes, bytes]) -> None:
    """Verify against ``trusted`` (key id -> raw public key); unknown signer is ``UnknownKeyError``."""
    public = trusted.get(doc.signer_key_id)
    if public is None:
        raise UnknownKeyError(f"{doc.kind.value[1]} signed by an unknown key", key_id=doc.signer_key_id.hex())
    _ed25519.verify(public, doc.kind.label + doc.signed_part, doc.signature, doc.kind.value[1])
