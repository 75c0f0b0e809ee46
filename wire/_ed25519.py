"""Ed25519 verification wrapped into the wire error tree.

libsodium's verifier refuses non-canonical ``S`` (>= L) and small-order keys
and ``R`` values; this module also refuses small-order keys and ``R`` itself
(docs/protocol.md section 5 makes it a MUST), so the rule does not rest on the
library's build. A malleated or small-order signature is ``BadSignatureError``
like any other forgery (vectors ``ed25519.json``).
"""

from __future__ import annotations

from nacl import exceptions
from nacl.signing import SigningKey, VerifyKey

from .errors import BadSignatureError

__all__ = ["SIGNATURE_LEN", "is_small_order", "sign", "verify"]

SIGNATURE_LEN = 64

# Encodings of the points of order 1, 2, 4 and 8 and the non-canonical ones of 0 and 1 (libsodium's
# blocklist), compared ignoring the sign bit.
_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


def is_small_order(point: bytes) -> bool:
    """True for the 32-byte encoding of a small-order point (sign bit ignored)."""
    return len(point) == 32 and point[:31] + bytes([point[31] & 0x7F]) in _SMALL_ORDER


def sign(signing_key: SigningKey, message: bytes) -> bytes:
    return bytes(signing_key.sign(message).signature)


def verify(public_key: bytes, message: bytes, signature: bytes, what: str, **facts: object) -> None:
    if len(signature) != SIGNATURE_LEN or len(public_key) != 32:
        raise BadSignatureError(f"{what} signature does not verify", **facts)
    if is_small_order(public_key) or is_small_order(signature[:32]):
        raise BadSignatureError(f"{what} signature does not verify", **facts)
    try:
        VerifyKey(public_key).verify(message, signature)
    except (exceptions.BadSignatureError, exceptions.CryptoError, ValueError, TypeError) as e:
        raise BadSignatureError(f"{what} signature does not verify", **facts) from e
