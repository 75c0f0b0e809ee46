"""libsodium sealed boxes (``crypto_box_seal``) with the ephemeral key as a parameter.

The output is byte-identical to libsodium's ``crypto_box_seal``:
``epk || crypto_box(m, nonce=BLAKE2b-192(epk || pk), pk, esk)``, so any
libsodium binding opens it. Taking the ephemeral secret as an argument keeps
the protocol core free of randomness and makes the test vectors reproducible;
callers pass 32 fresh random bytes.
"""

from __future__ import annotations

from nacl import bindings, exceptions
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from .errors import DecodeError

__all__ = ["SEAL_OVERHEAD", "open_sealed", "seal"]

SEAL_OVERHEAD = 32 + 16


def seal(plaintext: bytes, recipient_public: bytes, ephemeral_secret: bytes) -> bytes:
    if len(ephemeral_secret) != 32 or len(recipient_public) != 32:
        raise ValueError("ephemeral secret and recipient public key must be 32 bytes")
    epk = bindings.crypto_scalarmult_base(ephemeral_secret)
    nonce = blake2b(epk + recipient_public, digest_size=24, encoder=RawEncoder)
    box = bindings.crypto_box(plaintext, nonce, recipient_public, ephemeral_secret)
    return epk + box


def open_sealed(ciphertext: bytes, recipient_public: bytes, recipient_secret: bytes) -> bytes:
    """Open a sealed box; any failure is one opaque ``DecodeError``."""
    if len(ciphertext) < SEAL_OVERHEAD:
        raise DecodeError("sealed box too short")
    try:
        return bytes(bindings.crypto_box_seal_open(ciphertext, recipient_public, recipient_secret))
    except (exceptions.CryptoError, ValueError, TypeError) as e:
        raise DecodeError("sealed box does not open") from e
