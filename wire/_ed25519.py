"""Ed25519 verification wrapped into the wire error tree.

libsodium's verifier refuses non-canonical ``S`` (>= L) and small-order keys,
so a malleated signature is ``BadSignatureError`` like any other forgery.
"""

from __future__ import annotations

from nacl import exceptions
from nacl.signing import SigningKey, VerifyKey

from .errors import BadSignatureError

__all__ = ["SIGNATURE_LEN", "sign", "verify"]

SIGNATURE_LEN = 64


def sign(signing_key: SigningKey, message: bytes) -> bytes:
    return bytes(signing_key.sign(message).signature)


def verify(public_key: bytes, message: bytes, signature: bytes, what: str, **facts: object) -> None:
    if len(signature) != SIGNATURE_LEN or len(public_key) != 32:
        raise BadSignatureError(f"{what} signature does not verify", **facts)
    try:
        VerifyKey(public_key).verify(message, signature)
    except (exceptions.BadSignatureError, exceptions.CryptoError, ValueError, TypeError) as e:
        raise BadSignatureError(f"{what} signature does not verify", **facts) from e
