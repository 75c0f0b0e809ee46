"""Key identifiers: 16 bytes derived from a raw 32-byte public key.

``key_id(pk) = SHA-256("sanaq-sync/v1/key-id" || 0x00 || pk)[0:16]``, written
as 32 lowercase hex digits wherever text is needed.
"""

from __future__ import annotations

import hashlib
import re

from .errors import DecodeError

__all__ = ["KEY_ID_LEN", "key_id", "key_id_hex", "parse_hex"]

KEY_ID_LEN = 16
_LABEL = b"sanaq-sync/v1/key-id\x00"
_LOWER_HEX = re.compile(r"[0-9a-f]*")


def key_id(public_key: bytes) -> bytes:
    if len(public_key) != 32:
        raise DecodeError("public key must be 32 bytes", size=len(public_key))
    return hashlib.sha256(_LABEL + public_key).digest()[:KEY_ID_LEN]


def key_id_hex(public_key: bytes) -> str:
    return key_id(public_key).hex()


def parse_hex(text: object, size: int, what: str) -> bytes:
    """Parse exactly ``size`` bytes of lowercase hex; anything else is ``DecodeError``."""
    if not isinstance(text, str) or len(text) != 2 * size:
        raise DecodeError(f"{what} must be {2 * size} hex digits")
    # fullmatch first: bytes.fromhex alone would skip whitespace and return fewer bytes.
    if not _LOWER_HEX.fullmatch(text):
        raise DecodeError(f"{what} must be lowercase hex")
    return bytes.fromhex(text)
