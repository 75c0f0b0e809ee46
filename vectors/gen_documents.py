"""receipt.json and sync_state.json: gateway-signed documents, valid and refused.

``raw_document`` builds the container bytes with every field settable,
independently of ``wire.documents``; the snapshot, manifest and custody files
(``gen_registry.py``) use it too.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from gen_keys import DEVICE, KEYS, STATION, T_RECEIVED, WEB_SERVICE

from wire import canonical, compute_gaps

__all__ = ["LABELS", "MAGICS", "doc_case", "flip", "raw_document", "receipt_vectors", "sync_state_vectors"]

MAGICS = {"receipt": b"SNQR", "snapshot": b"SNQS", "manifest": b"SNQM", "custody": b"SNQC", "sync-state": b"SNQY",
          "certificate-key": b"SNQK", "certificate": b"SNQP"}
LABELS = {kind: b"sanaq-sync/v1/" + kind.encode() + b"\x00" for kind in MAGICS}


def raw_document(
    kind: str,
    body: bytes | Any,
    signer: str,
    *,
    magic: bytes | None = None,
    version: int = 1,
    label: bytes | None = None,
    body_len: int | None = None,
    signer_key_id: bytes | None = None,
) -> bytes:
    """Container bytes; ``body`` is raw bytes or a value to encode canonically."""
    body_bytes = body if isinstance(body, bytes) else canonical.encode(body)
    head = b"".join(
        [
            MAGICS[kind] if magic is None else magic,
            bytes([version]),
            KEYS[signer].key_id if signer_key_id is None else signer_key_id,
            struct.pack(">I", len(body_bytes) if body_len is None else body_len),
        ]
    )
    signed = head + body_bytes
    sig = KEYS[signer].signing_key.sign((LABELS[kind] if label is None else label) + signed).signature
    return signed + bytes(sig)


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def doc_case(name: str, description: str, document: bytes, expected: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "document": document.hex(), "expected": expected, **extra}


def ok_case(name: str, description: str, kind: str, body: dict[str, Any], *, signer: str,
            parsed: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc = raw_document(kind, body, signer)
    body_bytes = canonical.encode(body)
    return {
        "name": name,
        "description": description,
        "signer": signer,
        "body": body,
        "body_text": body_bytes.decode("utf-8"),
        "signing_input": (LABELS[kind] + doc[:-64]).hex(),
        "signature": doc[-64:].hex(),
        "document": doc.hex(),
        "digest": hashlib.sha256(doc).hexdigest(),
        **extra,
        "expected": "ok",
        "parsed": parsed,
    }


def container_cases(kind: str, good: bytes, body: dict[str, Any], *, signer: str, intruder: str,
                    other_kind: str) -> list[dict[str, Any]]:
    """The refusals every kind shares: framing, versions, label, signer, canonical form."""
    text = canonical.encode(body)
    spaced = text.replace(b",", b", ", 1)
    return [
        doc_case("empty", "zero bytes", b"", "truncated"),
        doc_case("truncated", "last signature byte missing", good[:-1], "truncated"),
        doc_case("truncated-body", "ends inside the body", good[:30], "truncated"),
        doc_case("trailing-byte", "one byte after the signature", good + b"\x00", "trailing-bytes"),
        doc_case("wrong-magic", f"a valid {other_kind} document offered as {kind}",
                 raw_document(other_kind, body, signer), "malformed"),
        doc_case("version-2", "container version 2, signed", raw_document(kind, body, signer, version=2),
                 "unsupported-version"),
        doc_case("body-v-2", "body member v is 2, signed", raw_document(kind, {**body, "v": 2}, signer),
                 "unsupported-version"),
        doc_case("body-v-true", "body member v is JSON true, signed", raw_document(kind, {**body, "v": True}, signer),
                 "unsupported-version"),
        doc_case("body-non-canonical", "a space after the first comma, signed", raw_document(kind, spaced, signer),
                 "non-canonical"),
        doc_case("body-len-too-big", "body_len one more than the body", raw_document(kind, body, signer,
                 body_len=len(text) + 1), "truncated"),
        doc_case("flip-signature", "last signature byte flipped", flip(good, len(good) - 1), "bad-signature"),
        doc_case("signature-zero", "64 zero bytes as signature", good[:-64] + bytes(64), "bad-signature"),
        doc_case("wrong-label", f"signed with the label of {other_kind}",
                 raw_document(kind, body, signer, label=LABELS[other_kind]), "bad-signature"),
        doc_case("signer-id-swapped", f"signed by {intruder} but naming the trusted key id",
                 raw_document(kind, body, intruder, signer_key_id=KEYS[signer].key_id), "bad-signature"),
        doc_case("unknown-signer", f"validly signed by {intruder}, not trusted", raw_document(kind, body, intruder),
                 "unknown-key"),
    ]


def receipt_vectors(valid_envelopes: list[dict[str, Any]]) -> dict[str, Any]:
    env1, env2 = valid_envelopes[0], valid_envelopes[1]
    body = {
        "v": 1, "batch_hash": env1["batch_hash"], "device_id": DEVICE, "seq": 1, "received_at_ms": T_RECEIVED,
        "road": "online", "sheets_accepted": 1, "sheets_quarantined": 0,
    }
    station_body = {
        **body, "batch_hash": env2["batch_hash"], "seq": 2, "received_at_ms": T_RECEIVED + 1,
        "road": f"station:{STATION}", "sheets_accepted": 3, "sheets_quarantined": 0,
    }
    web_body = {**body, "device_id": WEB_SERVICE, "road": f"web:{WEB_SERVICE}", "received_at_ms": T_RECEIVED + 2}

    def parsed(b: dict[str, Any], signer: str) -> dict[str, Any]:
        return {**{k: v for k, v in b.items() if k != "v"}, "signer_key_id": KEYS[signer].key_id.hex()}

    good = raw_document("receipt", body, "gateway")
    bad_hash = {**body, "batch_hash": " ".join(body["batch_hash"][i : i + 2] for i in range(0, 42, 2)) + "00"}
    assert len(bad_hash["batch_hash"]) == 64
    cases = [
        ok_case("online", "receipt for envelope case 'one-sheet' sent by the tablet", "receipt", body,
                signer="gateway", parsed=parsed(body, "gateway"), envelope_case="one-sheet"),
        ok_case("station", "receipt for envelope case 'three-sheets' carried by a station", "receipt",
                station_body, signer="gateway", parsed=parsed(station_body, "gateway"), envelope_case="three-sheets"),
        ok_case("web", "a receipt naming the web road (section 9.1); its batch_hash is that of envelope case "
                "'one-sheet', the body is what this case checks", "receipt", web_body, signer="gateway",
                parsed=parsed(web_body, "gateway"), envelope_case="one-sheet"),
        *container_cases("receipt", good, body, signer="gateway", intruder="other_gateway", other_kind="sync-state"),
        doc_case("tampered-seq", "body seq changed 1 -> 7 after signing (still canonical)",
                 good.replace(b'"seq":1', b'"seq":7'), "bad-signature"),
        doc_case("oversize", "a receipt longer than 4096 bytes", raw_document(
            "receipt", {**body, "road": "online", "pad": "x" * 4100}, "gateway"), "oversize"),
        doc_case("missing-member", "no sheets_quarantined, signed", raw_document(
            "receipt", {k: v for k, v in body.items() if k != "sheets_quarantined"}, "gateway"), "malformed"),
        doc_case("extra-member", "an extra member, signed", raw_document("receipt", {**body, "x": 1}, "gateway"),
                 "malformed"),
        doc_case("road-malformed", "road 'station:' without an id, signed",
                 raw_document("receipt", {**body, "road": "station:"}, "gateway"), "malformed"),
        doc_case("road-web-malformed", "road 'web:' without an id, signed",
                 raw_document("receipt", {**body, "road": "web:"}, "gateway"), "malformed"),
        doc_case("hash-uppercase", "batch_hash in uppercase hex, signed",
                 raw_document("receipt", {**body, "batch_hash": body["batch_hash"].upper()}, "gateway"), "malformed"),
        doc_case("hash-with-spaces", "batch_hash of 64 characters with spaces between hex pairs, signed",
                 raw_document("receipt", bad_hash, "gateway"), "malformed"),
        doc_case("seq-0", "seq 0, signed", raw_document("receipt", {**body, "seq": 0}, "gateway"), "malformed"),
        doc_case("seq-string", "seq \"1\", signed", raw_document("receipt", {**body, "seq": "1"}, "gateway"),
                 "malformed"),
    ]
    return {
        "vectors": "receipt",
        "spec": "docs/protocol.md, section 'Receipt'",
        "procedure": [
            "Decode the container (kind receipt, at most 4096 bytes), verify it with the trusted gateway keys "
            "listed in 'trusted', then check the body members. The first failure gives 'expected'.",
            "A tablet then also checks batch_hash, device_id and seq against the envelope it holds before deleting.",
        ],
        "trusted": ["gateway"],
        "keys": None,
        "cases": cases,
    }


def sync_state_vectors() -> dict[str, Any]:
    def body_for(seqs: list[int], last: int | None) -> dict[str, Any]:
        highest, max_seq, gaps = compute_gaps(seqs)
        return {"v": 1, "device_id": DEVICE, "issued_at_ms": T_RECEIVED + 5000, "highest_contiguous": highest,
                "max_seq": max_seq, "gaps": [[a, b] for a, b in gaps], "last_sync_ms": last}

    gappy = body_for([1, 2, 3, 5, 8, 9], T_RECEIVED)
    empty = body_for([], None)
    full = body_for([1, 2, 3], T_RECEIVED)

    def parsed(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if k != "v"}

    good = raw_document("sync-state", gappy, "gateway")
    gap_tables = [[1, 2, 3, 5, 8, 9], [], [1, 2, 3], [2], [3, 1, 2, 2], [1, 3, 5], [10]]
    cases = [
        ok_case("gaps", "seqs 1,2,3,5,8,9 stored", "sync-state", gappy, signer="gateway", parsed=parsed(gappy)),
        ok_case("empty", "nothing stored yet", "sync-state", empty, signer="gateway", parsed=parsed(empty)),
        ok_case("contiguous", "seqs 1..3 stored", "sync-state", full, signer="gateway", parsed=parsed(full)),
        *container_cases("sync-state", good, gappy, signer="gateway", intruder="other_gateway", other_kind="receipt"),
        doc_case("highest-wrong", "highest_contiguous 5 although seq 4 is a gap, signed",
                 raw_document("sync-state", {**gappy, "highest_contiguous": 5}, "gateway"), "malformed"),
        doc_case("highest-above-max", "no gaps, highest_contiguous 4 above max_seq 3, signed",
                 raw_document("sync-state", {**full, "highest_contiguous": 4}, "gateway"), "malformed"),
        doc_case("gaps-out-of-order", "gaps listed in descending order, signed",
                 raw_document("sync-state", {**gappy, "gaps": [[6, 7], [4, 4]]}, "gateway"), "malformed"),
        doc_case("gaps-touching", "gaps [4,4] and [5,7] touch, signed",
                 raw_document("sync-state", {**gappy, "gaps": [[4, 4], [5, 7]]}, "gateway"), "malformed"),
        doc_case("gap-reaches-max", "gap [6,9] with max_seq 9, signed",
                 raw_document("sync-state", {**gappy, "gaps": [[4, 4], [6, 9]]}, "gateway"), "malformed"),
        doc_case("gap-reversed", "gap [7,6], signed",
                 raw_document("sync-state", {**gappy, "gaps": [[4, 4], [7, 6]]}, "gateway"), "malformed"),
        doc_case("gap-zero", "gap starting at 0, signed",
                 raw_document("sync-state", {**gappy, "highest_contiguous": 0, "gaps": [[0, 4], [6, 7]]}, "gateway"),
                 "malformed"),
    ]
    return {
        "vectors": "sync_state",
        "spec": "docs/protocol.md, section 'Sync state'",
        "procedure": [
            "Decode the container (kind sync-state), verify it with the keys in 'trusted', check the body members "
            "and their consistency. The first failure gives 'expected'.",
            "'compute_gaps' maps a set of stored seqs to (highest_contiguous, max_seq, gaps).",
        ],
        "trusted": ["gateway"],
        "keys": None,
        "cases": cases,
        "compute_gaps": [_gaps_case(t) for t in gap_tables],
    }


def _gaps_case(seqs: list[int]) -> dict[str, Any]:
    highest, max_seq, gaps = compute_gaps(seqs)
    return {"seqs": seqs, "highest_contiguous": highest, "max_seq": max_seq, "gaps": [list(g) for g in gaps]}
