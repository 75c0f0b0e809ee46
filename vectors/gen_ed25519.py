"""ed25519.json: Ed25519 verification edge cases every verifier of the protocol must decide alike.

RFC 8032 section 5.1.7 strictly (``S < L``), and the small-order refusal of
docs/protocol.md section 5: a public key or an ``R`` whose encoding is one of
the small-order points below (compared ignoring the sign bit, bit 255) is
refused. Some Ed25519 implementations (e.g. the JDK's) accept the
identity-key forgery below for every message.
"""

from __future__ import annotations

from typing import Any

from gen_keys import KEYS

__all__ = ["SMALL_ORDER_POINTS", "ed25519_vectors"]

ED25519_L = 2**252 + 27742317777372353535851937790883648493
LABEL = b"sanaq-sync/v1/batch\x00"

# libsodium's blocklist (ge25519_has_small_order): the encodings of the points of order 1, 2, 4 and 8,
# and the non-canonical encodings of 0 and 1 (y = p, y = p + 1).
SMALL_ORDER_POINTS = {
    "order-4-zero": "0000000000000000000000000000000000000000000000000000000000000000",
    "identity": "0100000000000000000000000000000000000000000000000000000000000000",
    "order-8-a": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order-8-b": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "order-2": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "order-4-p": "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "identity-p-plus-1": "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}


def _case(name: str, description: str, public_key: bytes, message: bytes, signature: bytes, *,
          expected: str) -> dict[str, Any]:
    return {"name": name, "description": description, "public_key": public_key.hex(), "message": message.hex(),
            "signature": signature.hex(), "expected": expected}


def ed25519_vectors() -> dict[str, Any]:
    key = KEYS["tablet"]
    message = LABEL + b"example header"
    good = bytes(key.signing_key.sign(message).signature)
    s_plus_l = good[:32] + (int.from_bytes(good[32:], "little") + ED25519_L).to_bytes(32, "little")
    zero_s = bytes(32)
    identity = bytes.fromhex(SMALL_ORDER_POINTS["identity"])
    cases = [
        _case("valid", "a valid signature by key 'tablet'", key.public, message, good, expected="ok"),
        _case("s-plus-l", "the valid signature with S + L (malleated)", key.public, message, s_plus_l,
              expected="bad-signature"),
        _case("identity-key-forgery", "public key = identity, R = identity, S = 0: holds for every message under "
              "the cofactorless equation, so it MUST be refused", identity, message, identity + zero_s,
              expected="bad-signature"),
        _case("identity-key-forgery-other-message", "the same forgery over another message", identity,
              b"anything at all", identity + zero_s, expected="bad-signature"),
    ]
    for name, point in SMALL_ORDER_POINTS.items():
        p = bytes.fromhex(point)
        cases.append(_case(f"small-order-key-{name}", f"public key is the small-order point {name}; R = it, S = 0",
                           p, message, p + zero_s, expected="bad-signature"))
        cases.append(_case(f"small-order-r-{name}", f"key 'tablet', R is the small-order point {name}, S of the "
                           "valid signature", key.public, message, p + good[32:], expected="bad-signature"))
    signed_bit = bytearray(identity)
    signed_bit[31] |= 0x80
    cases.append(_case("small-order-key-sign-bit", "the identity with the sign bit set (still small order)",
                       bytes(signed_bit), message, bytes(signed_bit) + zero_s, expected="bad-signature"))
    return {
        "vectors": "ed25519",
        "spec": "docs/protocol.md, section 'Signatures and domain separation'",
        "procedure": [
            "Verify 'signature' over 'message' with 'public_key' (all hex). 'ok': it verifies; 'bad-signature': "
            "it MUST be refused.",
            "Refuse S >= L (RFC 8032 section 5.1.7), and a public key or R (the first 32 signature bytes) equal, "
            "ignoring bit 255, to an encoding in 'small_order_points'.",
        ],
        "small_order_points": SMALL_ORDER_POINTS,
        "cases": cases,
    }
