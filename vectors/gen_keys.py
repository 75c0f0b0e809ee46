"""The fixed keys, ids and times every vector file uses.

Every secret is ``SHA-256("sanaq-sync/v1/test-vector/" || label)``, so anyone can
re-derive them from the label alone; Ed25519 keys use it as the RFC 8032 seed,
X25519 keys as the secret scalar (clamped by X25519 as usual). These keys are
public: never use them outside tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey

from wire.keyids import key_id

__all__ = [
    "ATTACKER_DEVICE",
    "CENSUS",
    "CERT_ISSUER",
    "DEVICE",
    "KEYS",
    "LONG_DEVICE",
    "LOST_DEVICE",
    "OLD_STATION",
    "RETURNED_DEVICE",
    "STATION",
    "T_EXPIRES",
    "T_ISSUED",
    "T_RECEIVED",
    "T_SEALED",
    "USB_SERIAL",
    "VectorKey",
    "WEB_SERVICE",
    "derive",
    "keys_json",
]

SEED_PREFIX = b"sanaq-sync/v1/test-vector/"

DEVICE = "TAB-00001"
LOST_DEVICE = "TAB-00002"
RETURNED_DEVICE = "TAB-00003"
ATTACKER_DEVICE = "TAB-66666"
LONG_DEVICE = "TAB-" + "0123456789" * 6  # 64 characters: the longest device id
STATION = "ST-ALA-01"
OLD_STATION = "ST-ALA-02"
USB_SERIAL = "R58N30ABCDE"
WEB_SERVICE = "WEB-AST-01"
CERT_ISSUER = "staff-ATY"
CENSUS = "KZ-2020"

T_SEALED = 1_760_000_000_000  # 2025-10-09T08:53:20Z
T_RECEIVED = 1_760_000_012_345
T_ISSUED = 1_759_900_000_000
T_EXPIRES = 1_760_500_000_000


def derive(label: str) -> bytes:
    return hashlib.sha256(SEED_PREFIX + label.encode("ascii")).digest()


@dataclass(frozen=True)
class VectorKey:
    name: str
    kind: str  # "ed25519" or "x25519"
    role: str
    secret: bytes

    @property
    def public(self) -> bytes:
        if self.kind == "x25519":
            return bytes(crypto_scalarmult_base(self.secret))
        return bytes(SigningKey(self.secret).verify_key)

    @property
    def key_id(self) -> bytes:
        return key_id(self.public)

    @property
    def signing_key(self) -> SigningKey:
        assert self.kind == "ed25519"
        return SigningKey(self.secret)

    def to_json(self) -> dict[str, Any]:
        secret_name = "seed" if self.kind == "ed25519" else "secret"
        return {
            "type": self.kind,
            "role": self.role,
            "label": self.name,
            secret_name: self.secret.hex(),
            "public_key": self.public.hex(),
            "key_id": self.key_id.hex(),
        }


def _key(name: str, kind: str, role: str) -> VectorKey:
    return VectorKey(name, kind, role, derive(name))


KEYS: dict[str, VectorKey] = {
    k.name: k
    for k in (
        _key("root", "ed25519", "authority root key: signs registry snapshots"),
        _key("data", "x25519", "census data key: every batch is sealed to it"),
        _key("gateway", "ed25519", "gateway receipt key: signs receipts and sync states"),
        _key("tablet", "ed25519", f"tablet key of {DEVICE} (status issued)"),
        _key("tablet_lost", "ed25519", f"tablet key of {LOST_DEVICE} (status lost)"),
        _key("tablet_returned", "ed25519", f"tablet key of {RETURNED_DEVICE} (status returned)"),
        _key("tablet_long", "ed25519", "tablet key of the 64-character device id (status issued)"),
        _key("station", "ed25519", f"station key of {STATION} (status active)"),
        _key("old_station", "ed25519", f"station key of {OLD_STATION} (status revoked)"),
        _key("web", "ed25519", f"web service key of {WEB_SERVICE} (self-enumeration, status active)"),
        _key("attacker", "ed25519", f"an attacker's own enrolled tablet {ATTACKER_DEVICE}"),
        _key("other_root", "ed25519", "a root key nobody trusts"),
        _key("other_data", "x25519", "another authority's data key"),
        _key("other_gateway", "ed25519", "a receipt key nobody trusts"),
        _key("other_station", "ed25519", "a station key nobody trusts"),
        _key("certificate", "ed25519", f"certificate key of issuer {CERT_ISSUER}, certified by root (section 7.4)"),
        _key("other_certificate", "ed25519", "a certificate key no root certified"),
    )
}


def keys_json(*names: str) -> dict[str, Any]:
    """The ``keys`` member of a vector file: the named keys, or all of them."""
    chosen = names or tuple(KEYS)
    return {n: KEYS[n].to_json() for n in chosen}
