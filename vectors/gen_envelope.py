"""envelope.json: batch envelopes that must verify and open, and every way one must not.

The bytes are built here with ``struct`` and ``hashlib`` independently of
``wire.envelope``; for the valid cases ``generate.py`` asserts that
``wire.seal_batch`` produces the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from gen_keys import ATTACKER_DEVICE, DEVICE, KEYS, LONG_DEVICE, LOST_DEVICE, RETURNED_DEVICE, T_SEALED, derive
from gen_sheets import SHEET_HOUSEHOLD, SHEETS_MORE

from wire import canonical, sealing

__all__ = ["ED25519_L", "SIGN_LABEL", "body_bytes", "envelope_vectors", "raw_envelope", "seal_to"]

SIGN_LABEL = b"sanaq-sync/v1/batch\x00"
ED25519_L = 2**252 + 27742317777372353535851937790883648493
MAX_SAFE = 2**53 - 1

SHEET_1 = SHEET_HOUSEHOLD  # valid census sheets (sheets.json): the gateway stores them, none is quarantined
SHEETS_3 = SHEETS_MORE

DEVICES = {
    DEVICE: {"key": "tablet", "status": "issued"},
    LOST_DEVICE: {"key": "tablet_lost", "status": "lost"},
    RETURNED_DEVICE: {"key": "tablet_returned", "status": "returned"},
    LONG_DEVICE: {"key": "tablet_long", "status": "issued"},
    ATTACKER_DEVICE: {"key": "attacker", "status": "issued"},
}

PROCEDURE = [
    "1. decode: parse the layout strictly with the default limits (docs/protocol.md 'Batch envelope').",
    "2. look up header.device_id in 'devices': absent -> unknown-key; status other than issued -> revoked.",
    "3. verify: SHA-256(ciphertext) == header.ciphertext_hash else hash-mismatch; then the Ed25519 signature "
    "with the device's key over 'sanaq-sync/v1/batch' || 0x00 || header bytes, else bad-signature.",
    "4. open with the case's data_key (default 'data'): header.recipient_key_id must be that key's id, else "
    "wrong-recipient; crypto_box_seal_open failure -> malformed; body must be canonical JSON with exactly the "
    "members device_id, seq, sheets, v; v == 1 else unsupported-version; device_id, seq and the number of "
    "sheets must equal the header's, else binding-mismatch.",
    "The first failing step gives 'expected'; 'ok' means every step passed and 'sheets' is the result.",
    "These are a station's steps (6.5 steps 1-4) plus opening (6.5 steps 6-8). A gateway also runs 6.5 step 5 "
    "after step 3: the schema must be exactly census-sheet/1, else unsupported-schema; 'gateway_expected', where "
    "present, is the gateway's outcome for the case.",
]


def body_bytes(device_id: str, seq: int, sheets: list[Any]) -> bytes:
    return canonical.encode({"device_id": device_id, "seq": seq, "sheets": sheets, "v": 1})


def seal_to(plaintext: bytes, data_key: str, label: str) -> bytes:
    return sealing.seal(plaintext, KEYS[data_key].public, derive("ephemeral/" + label))


def raw_envelope(
    *,
    ciphertext: bytes,
    device_id: bytes = DEVICE.encode(),
    seq: int = 1,
    sealed_at_ms: int = T_SEALED,
    record_count: int = 1,
    schema: bytes = b"census-sheet/1",
    recipient: str = "data",
    signer: str | None = "tablet",
    magic: bytes = b"SNQB",
    version: int = 1,
    ciphertext_hash: bytes | None = None,
    ciphertext_len: int | None = None,
    signature: bytes | None = None,
    sign_label: bytes = SIGN_LABEL,
) -> bytes:
    """Envelope bytes with every field settable; signs whatever header results."""
    header = b"".join(
        [
            magic,
            bytes([version, len(device_id)]),
            device_id,
            struct.pack(">QQI", seq, sealed_at_ms, record_count),
            bytes([len(schema)]),
            schema,
            KEYS[recipient].key_id,
            hashlib.sha256(ciphertext).digest() if ciphertext_hash is None else ciphertext_hash,
            struct.pack(">I", len(ciphertext) if ciphertext_len is None else ciphertext_len),
        ]
    )
    if signature is None:
        assert signer is not None
        signature = bytes(KEYS[signer].signing_key.sign(sign_label + header).signature)
    return header + ciphertext + signature


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def _valid(name: str, description: str, *, device_id: str, seq: int, sheets: list[Any], signer: str,
           sealed_at_ms: int = T_SEALED, schema: str = "census-sheet/1") -> dict[str, Any]:
    plaintext = body_bytes(device_id, seq, sheets)
    eph = derive("ephemeral/" + name)
    ciphertext = sealing.seal(plaintext, KEYS["data"].public, eph)
    env = raw_envelope(ciphertext=ciphertext, device_id=device_id.encode(), seq=seq, sealed_at_ms=sealed_at_ms,
                       record_count=len(sheets), schema=schema.encode(), signer=signer)
    header_len = len(env) - len(ciphertext) - 64
    epk = ciphertext[:32]
    return {
        "name": name,
        "description": description,
        "inputs": {
            "device_id": device_id,
            "seq": seq,
            "sealed_at_ms": sealed_at_ms,
            "schema": schema,
            "sheets": sheets,
            "device_key": signer,
            "data_key": "data",
            "ephemeral_secret": eph.hex(),
        },
        "plaintext": plaintext.hex(),
        "plaintext_text": plaintext.decode("utf-8"),
        "seal": {
            "ephemeral_public": epk.hex(),
            "nonce": hashlib.blake2b(epk + KEYS["data"].public, digest_size=24).digest().hex(),
            "box": ciphertext[32:].hex(),
        },
        "header": {
            "magic": "SNQB",
            "version": 1,
            "device_id": device_id,
            "seq": seq,
            "sealed_at_ms": sealed_at_ms,
            "record_count": len(sheets),
            "schema": schema,
            "recipient_key_id": KEYS["data"].key_id.hex(),
            "ciphertext_hash": hashlib.sha256(ciphertext).hexdigest(),
            "ciphertext_len": len(ciphertext),
        },
        "header_bytes": env[:header_len].hex(),
        "signing_input": (SIGN_LABEL + env[:header_len]).hex(),
        "ciphertext": ciphertext.hex(),
        "signature": env[-64:].hex(),
        "envelope": env.hex(),
        "batch_hash": hashlib.sha256(env).hexdigest(),
        "expected": "ok",
        "sheets": sheets,
    }


def _bad(name: str, description: str, envelope: bytes, expected: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "envelope": envelope.hex(), "expected": expected, **extra}


def _negative_cases(base: bytes) -> list[dict[str, Any]]:
    ct = seal_to(body_bytes(DEVICE, 1, [SHEET_1]), "data", "one-sheet")
    hl = len(base) - len(ct) - 64  # header length of the base envelope
    off_seq = 6 + len(DEVICE)
    off_count = off_seq + 16
    off_rcpt = off_count + 4 + 1 + len(b"census-sheet/1")
    off_hash = off_rcpt + 16
    sig = base[-64:]
    s_plus_l = (int.from_bytes(sig[32:], "little") + ED25519_L).to_bytes(32, "little")

    def raw_body(text: bytes) -> bytes:
        return seal_to(text, "data", "body/" + hashlib.sha256(text).hexdigest()[:16])

    def body(device_id: str = DEVICE, seq: int = 1) -> bytes:
        return raw_body(body_bytes(device_id, seq, [SHEET_1]))

    cases = [
        _bad("empty", "zero bytes", b"", "truncated"),
        _bad("truncated-magic", "ends inside the magic", base[:3], "truncated"),
        _bad("short-wrong-magic", "two bytes 'XY': the input ends before the magic could be read", b"XY",
             "truncated"),
        _bad("wrong-magic-only", "exactly four bytes 'XXXX': a whole magic, and a wrong one", b"XXXX", "malformed"),
        _bad("truncated-header", "ends inside the seq field", base[: off_seq + 3], "truncated"),
        _bad("truncated-ciphertext", "ends inside the ciphertext", base[: hl + 20], "truncated"),
        _bad("truncated-signature", "last byte of the signature missing", base[:-1], "truncated"),
        _bad("trailing-byte", "one 0x00 after the signature", base + b"\x00", "trailing-bytes"),
        _bad("bad-magic", "magic SNQX", raw_envelope(ciphertext=ct, magic=b"SNQX"), "malformed"),
        _bad("version-0", "version byte 0", raw_envelope(ciphertext=ct, version=0), "unsupported-version"),
        _bad("version-2", "version byte 2, otherwise valid and signed", raw_envelope(ciphertext=ct, version=2),
             "unsupported-version"),
        _bad("device-id-len-0", "device_id_len 0", raw_envelope(ciphertext=ct, device_id=b""), "malformed"),
        _bad("device-id-len-65", "device_id_len 65", raw_envelope(ciphertext=ct, device_id=b"T" * 65), "malformed"),
        _bad("device-id-space", "device id with a space", raw_envelope(ciphertext=ct, device_id=b"TAB 00001"),
             "malformed"),
        _bad("device-id-leading-dash", "device id must start with a letter or digit",
             raw_envelope(ciphertext=ct, device_id=b"-TAB-00001"), "malformed"),
        _bad("device-id-not-ascii", "device id byte 0xc3", raw_envelope(ciphertext=ct, device_id=b"TAB-0000\xc3"),
             "malformed"),
        _bad("seq-0", "seq 0, signed", raw_envelope(ciphertext=ct, seq=0), "malformed"),
        _bad("seq-2p53", "seq 2**53, one above the maximum, signed", raw_envelope(ciphertext=ct, seq=MAX_SAFE + 1),
             "malformed"),
        _bad("sealed-at-0", "sealed_at_ms 0", raw_envelope(ciphertext=ct, sealed_at_ms=0), "malformed"),
        _bad("record-count-0", "record_count 0", raw_envelope(ciphertext=ct, record_count=0), "malformed"),
        _bad("record-count-1001", "record_count above max_records_per_batch",
             raw_envelope(ciphertext=ct, record_count=1001), "oversize"),
        _bad("schema-len-0", "schema_len 0", raw_envelope(ciphertext=ct, schema=b""), "malformed"),
        _bad("schema-len-33", "schema_len 33", raw_envelope(ciphertext=ct, schema=b"s" * 33), "malformed"),
        _bad("schema-uppercase", "schema 'Census-sheet/1'", raw_envelope(ciphertext=ct, schema=b"Census-sheet/1"),
             "malformed"),
        _bad("ciphertext-len-47", "ciphertext shorter than a sealed box can be",
             raw_envelope(ciphertext=ct[:47]), "malformed"),
        _bad("ciphertext-len-over-limit", "ciphertext_len = max_ciphertext_bytes + 1 (bytes absent)",
             raw_envelope(ciphertext=ct, ciphertext_len=4 * 1024 * 1024 - 512 + 1), "oversize"),
        _bad("ciphertext-len-too-big", "ciphertext_len one more than the bytes present",
             raw_envelope(ciphertext=ct, ciphertext_len=len(ct) + 1), "truncated"),
        _bad("ciphertext-len-too-small", "ciphertext_len one less than the bytes present",
             raw_envelope(ciphertext=ct, ciphertext_len=len(ct) - 1), "trailing-bytes"),
        _bad("unknown-device", "validly signed by a key, for a device id not in the registry",
             raw_envelope(ciphertext=ct, device_id=b"TAB-99999", signer="other_station"), "unknown-key"),
        _bad("lost-device", "validly signed by the key of a tablet reported lost",
             raw_envelope(ciphertext=body(LOST_DEVICE), device_id=LOST_DEVICE.encode(), signer="tablet_lost"),
             "revoked"),
        _bad("returned-device", "validly signed by the key of a returned tablet",
             raw_envelope(ciphertext=body(RETURNED_DEVICE), device_id=RETURNED_DEVICE.encode(),
                          signer="tablet_returned"), "revoked"),
        _bad("flip-seq", "last byte of seq flipped (1 -> 0 is caught earlier, so 1 -> 3)",
             _flip(base, off_seq + 7, 0x02), "bad-signature"),
        _bad("flip-sealed-at", "a bit of sealed_at_ms flipped", _flip(base, off_seq + 12), "bad-signature"),
        _bad("flip-record-count", "record_count 1 -> 3", _flip(base, off_count + 3, 0x02), "bad-signature"),
        _bad("flip-recipient", "a bit of recipient_key_id flipped", _flip(base, off_rcpt), "bad-signature"),
        _bad("flip-ciphertext-hash", "a bit of ciphertext_hash flipped", _flip(base, off_hash), "hash-mismatch"),
        _bad("flip-ciphertext-first", "first ciphertext byte flipped", _flip(base, hl), "hash-mismatch"),
        _bad("flip-ciphertext-last", "last ciphertext byte flipped", _flip(base, len(base) - 65), "hash-mismatch"),
        _bad("flip-signature-r", "first signature byte flipped", _flip(base, len(base) - 64), "bad-signature"),
        _bad("flip-signature-s", "last signature byte flipped", _flip(base, len(base) - 1, 0x10), "bad-signature"),
        _bad("signature-s-plus-l", "malleated signature: S replaced by S + L (non-canonical S)",
             base[:-32] + s_plus_l, "bad-signature"),
        _bad("signature-zero", "64 zero bytes as signature", base[:-64] + bytes(64), "bad-signature"),
        _bad("signature-no-label", "signed over the header without the domain-separation label",
             raw_envelope(ciphertext=ct, sign_label=b""), "bad-signature"),
        _bad("signature-other-label", "signed with the receipt label instead of the batch label",
             raw_envelope(ciphertext=ct, sign_label=b"sanaq-sync/v1/receipt\x00"), "bad-signature"),
        _bad("forged-by-data-key-holder", "a valid body sealed by someone without the device key, signed with "
             "another key under the victim's device id", raw_envelope(ciphertext=body(), signer="attacker"),
             "bad-signature"),
        _bad("wrong-recipient", "sealed to and naming another authority's data key, signed by the tablet",
             raw_envelope(ciphertext=seal_to(body_bytes(DEVICE, 1, [SHEET_1]), "other_data", "wr"),
                          recipient="other_data"), "wrong-recipient"),
        _bad("recipient-id-lies", "header names the data key but the body is sealed to another key",
             raw_envelope(ciphertext=seal_to(body_bytes(DEVICE, 1, [SHEET_1]), "other_data", "lie")), "malformed"),
        _bad("binding-other-seq", "signed header seq 1, sealed body names seq 2",
             raw_envelope(ciphertext=body(seq=2)), "binding-mismatch"),
        _bad("binding-other-device", "signed header names TAB-00001, sealed body names TAB-00002",
             raw_envelope(ciphertext=body(LOST_DEVICE)), "binding-mismatch"),
        _bad("binding-count", "header record_count 2, body holds 1 sheet",
             raw_envelope(ciphertext=body(), record_count=2), "binding-mismatch"),
        _bad("binding-seq-true", "body member seq is JSON true, not the integer 1",
             raw_envelope(ciphertext=raw_body(b'{"device_id":"TAB-00001","seq":true,"sheets":[{}],"v":1}')),
             "binding-mismatch"),
        _bad("body-non-canonical", "body with a space after a colon",
             raw_envelope(ciphertext=raw_body(b'{"device_id": "TAB-00001","seq":1,"sheets":[{}],"v":1}')),
             "non-canonical"),
        _bad("body-not-json", "body is not JSON", raw_envelope(ciphertext=raw_body(b"sheets")), "malformed"),
        _bad("body-extra-member", "body has a member 'x'",
             raw_envelope(ciphertext=raw_body(b'{"device_id":"TAB-00001","seq":1,"sheets":[{}],"v":1,"x":0}')),
             "malformed"),
        _bad("body-v-2", "body member v is 2",
             raw_envelope(ciphertext=raw_body(b'{"device_id":"TAB-00001","seq":1,"sheets":[{}],"v":2}')),
             "unsupported-version"),
        _bad("surreptitious-forwarding", "the body of 'one-sheet', opened by a holder of the data key, re-sealed "
             "to another authority's data key and signed by the attacker's own enrolled tablet key under its own "
             "device id; the other authority opens it", raw_envelope(
                 ciphertext=seal_to(body_bytes(DEVICE, 1, [SHEET_1]), "other_data", "fwd"),
                 device_id=ATTACKER_DEVICE.encode(), recipient="other_data", signer="attacker"),
             "binding-mismatch", data_key="other_data"),
    ]
    assert raw_envelope(ciphertext=ct) == base
    return cases


def envelope_vectors() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The file content and the valid cases (for the manifest's volume)."""
    valid = [
        _valid("one-sheet", "the smallest ordinary batch", device_id=DEVICE, seq=1, sheets=[SHEET_1],
               signer="tablet"),
        _valid("three-sheets", "three valid census sheets: a family with Kazakh and Russian names, an institution "
               "resident, a household",
               device_id=DEVICE, seq=2, sheets=SHEETS_3, signer="tablet"),
        _valid("max-fields", "64-character device id, 32-character schema, seq and sealed_at_ms 2**53-1",
               device_id=LONG_DEVICE, seq=MAX_SAFE, sheets=[{}], signer="tablet_long", sealed_at_ms=MAX_SAFE,
               schema="census-sheet/1.0-x.y" + "z" * 12),
    ]
    valid[2]["gateway_expected"] = "unsupported-schema"  # 6.5 step 5: a gateway stores census-sheet/1 only
    base = bytes.fromhex(valid[0]["envelope"])
    content = {
        "vectors": "envelope",
        "spec": "docs/protocol.md, section 'Batch envelope'",
        "procedure": PROCEDURE,
        "limits": {"max_envelope_bytes": 4194304, "max_ciphertext_bytes": 4193792, "max_records_per_batch": 1000},
        "devices": DEVICES,
        "keys": None,  # filled by generate.py
        "cases": [*valid, *_negative_cases(base)],
    }
    return content, valid
