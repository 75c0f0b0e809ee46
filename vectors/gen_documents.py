"""receipt.json, sync_state.json and access_codes.json: gateway-signed documents, valid and refused.

``raw_document`` builds the container bytes with every field settable,
independently of ``wire.documents``; the snapshot, manifest and custody files
(``gen_registry.py``) use it too.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

from gen_keys import DEVICE, KEYS, STATION, T_RECEIVED, WEB_SERVICE

from wire import canonical, compute_gaps

__all__ = ["LABELS", "MAGICS", "access_codes_vectors", "assignments_vectors", "doc_case", "flip", "raw_document",
           "receipt_vectors", "sync_state_vectors"]

MAGICS = {"receipt": b"SNQR", "snapshot": b"SNQS", "manifest": b"SNQM", "custody": b"SNQC", "sync-state": b"SNQY",
          "access-codes": b"SNQW", "assignments": b"SNQA", "certificate-key": b"SNQK", "certificate": b"SNQP"}
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


def access_codes_vectors() -> dict[str, Any]:
    def change(version: int, n: int, status: str) -> dict[str, Any]:
        return {"version": version, "code_hash": hashlib.sha256(b"code %d" % n).hexdigest(),
                "entry_id": f"AB-000001/{n:05d}", "members": [f"AB-000001/{n:05d}"], "institution_code": "AB-000001",
                "institution_kind": "childrens_home", "worker_id": "W-17", "status": status}

    def change_of(version: int, n: int, entry: int, status: str) -> dict[str, Any]:
        entry_id = f"AB-000001/{entry:05d}"
        return {**change(version, n, status), "entry_id": entry_id, "members": [entry_id]}

    household = {**change(5, 4, "active"), "entry_id": "AB-000001/00004",
                 "members": ["AB-000001/00004", "AB-000001/00005", "AB-000001/00007"]}

    # code 1 (entry 1) was issued at version 1 and revoked at 3; code 3 re-issued entry 1 at version 4
    # pepper_id of a pepper of 32 bytes 0x11: keys.access_codes.pepper_id
    pepper = hmac.new(b"\x11" * 32, b"sanaq-selfenum/v1/pepper-id\x00", hashlib.sha256).hexdigest()[:16]
    body = {"v": 1, "web_id": WEB_SERVICE, "issued_at_ms": T_RECEIVED + 6000, "pepper_id": pepper, "since": 0,
            "latest": 4,
            "codes": [change(2, 2, "active"), change(3, 1, "revoked"), change_of(4, 3, 1, "active")]}
    tail = {**body, "since": 3, "codes": [change_of(4, 3, 1, "active")]}
    empty = {**body, "since": 4, "codes": []}
    with_household = {**body, "since": 4, "latest": 5, "codes": [household]}

    def parsed(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if k != "v"}

    def bad(name: str, description: str, **changes: Any) -> dict[str, Any]:
        return doc_case(name, description, raw_document("access-codes", {**body, **changes}, "gateway"), "malformed")

    first, second, third = body["codes"]
    good = raw_document("access-codes", body, "gateway")
    cases = [
        ok_case("from-start",
                "the newest state of every code from version 0: entry 1's first code revoked and re-issued",
                "access-codes", body, signer="gateway", parsed=parsed(body)),
        ok_case("tail", "the changes after version 3", "access-codes", tail, signer="gateway", parsed=parsed(tail)),
        ok_case("up-to-date", "nothing after version 4", "access-codes", empty, signer="gateway",
                parsed=parsed(empty)),
        ok_case("household", "one code for a household of three listed entries", "access-codes", with_household,
                signer="gateway", parsed=parsed(with_household)),
        *container_cases("access-codes", good, body, signer="gateway", intruder="other_gateway",
                         other_kind="sync-state"),
        bad("version-not-after-since", "a change with version equal to since, signed", since=2),
        bad("version-above-latest", "a change with version above latest, signed", latest=3),
        bad("versions-descending", "changes out of order, signed", codes=[second, first, third]),
        bad("versions-repeated", "two changes with one version, signed",
            codes=[first, {**second, "version": 1}, third]),
        bad("hash-uppercase", "code_hash in uppercase hex, signed",
            codes=[{**first, "code_hash": first["code_hash"].upper()}, second, third]),
        bad("entry-other-institution", "entry_id of another institution, signed",
            codes=[{**first, "entry_id": "CD-000002/00001"}, second, third]),
        bad("status-unknown", "status 'lost', signed", codes=[{**first, "status": "lost"}, second, third]),
        bad("change-extra-member", "a change with an extra member, signed",
            codes=[{**first, "name": "x"}, second, third]),
        doc_case(
            "missing-member", "no latest, signed",
            raw_document("access-codes", {k: v for k, v in body.items() if k != "latest"}, "gateway"), "malformed"),
        bad("web-id-malformed", "web_id with a space, signed", web_id="WEB 1"),
        bad("members-empty", "members empty, signed", codes=[{**first, "members": []}, second, third]),
        bad("members-not-from-entry", "members not starting with entry_id, signed",
            codes=[{**household, "members": household["members"][1:]}], since=4, latest=5),
        bad("members-descending", "members out of order, signed",
            codes=[{**household, "members": [household["members"][0], *household["members"][:0:-1]]}], since=4,
            latest=5),
        bad("members-other-institution", "a member of another institution, signed",
            codes=[{**household, "members": [*household["members"][:2], "CD-000002/00009"]}], since=4, latest=5),
        bad("pepper-id-uppercase", "pepper_id in uppercase hex, signed", pepper_id=pepper.upper()),
        bad("pepper-id-short", "pepper_id of 15 characters, signed", pepper_id=pepper[:15]),
    ]
    return {
        "vectors": "access_codes",
        "spec": "docs/protocol.md, section 'Access codes (self-enumeration)'",
        "procedure": [
            "Decode the container (kind access-codes), verify it with the keys in 'trusted', check the body members "
            "and the ordering of the changes. The first failure gives 'expected'.",
            "A web service then also checks web_id (its own) and since (the version it asked from).",
        ],
        "trusted": ["gateway"],
        "keys": None,
        "cases": cases,
    }


def assignments_vectors() -> dict[str, Any]:
    def entry(number: int, status: str, changed: int, *, at: int | None = None, **names: str) -> dict[str, Any]:
        return {"entry_id": f"AB-000001/{number:05d}", "status": status, "enumerated_at_ms": at,
                "surname": names.get("surname", "Серікова"), "given_name": names.get("given_name", "Айгүл"),
                "patronymic": names.get("patronymic", ""), "birth_date": names.get("birth_date", "1950-03-14"),
                "changed": changed}

    def body(version: int, since: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"v": 1, "device_id": DEVICE, "institution": "AB-000001", "issued_at_ms": T_RECEIVED + 9000,
                "version": version, "since": since, "entries": entries}

    whole = body(3, 0, [
        entry(1, "open", 1),
        entry(2, "enumerated-online", 2, at=T_RECEIVED, surname="Ivanov", given_name="Petr", patronymic="Ilyich",
              birth_date="1941-06-22"),
        entry(3, "enumerated-here", 3, at=T_RECEIVED + 1000, surname="Жұмабек", given_name="Нұрлан"),
        entry(4, "enumerated-elsewhere", 3, at=T_RECEIVED + 2000, surname="Ким", given_name="Ли"),
        entry(5, "needs-revisit", 1, surname="Омаров", given_name="Ерлан"),
    ])
    delta = body(4, 3, [entry(1, "enumerated-here", 4, at=T_RECEIVED + 3000),
                        entry(6, "withdrawn", 4, surname="", given_name="", birth_date="")])
    empty = body(0, 0, [])
    free_text = {**body(0, 0, []), "institution": "Областная больница №2"}

    def parsed(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if k != "v"}

    good = raw_document("assignments", whole, "gateway")
    first = whole["entries"][0]
    cases = [
        ok_case("whole", "the whole list at version 3 (since 0), one entry of each status but withdrawn",
                "assignments", whole, signer="gateway", parsed=parsed(whole)),
        ok_case("delta", "entries changed after version 3: one now enumerated here, one withdrawn",
                "assignments", delta, signer="gateway", parsed=parsed(delta)),
        ok_case("empty", "no list held for the institution yet", "assignments", empty, signer="gateway",
                parsed=parsed(empty)),
        ok_case("free-text-institution", "a registry institution that is not a list code: never any entries",
                "assignments", free_text, signer="gateway", parsed=parsed(free_text)),
        doc_case("institution-empty", "institution \"\", signed",
                 raw_document("assignments", {**empty, "institution": ""}, "gateway"), "malformed"),
        *container_cases("assignments", good, whole, signer="gateway", intruder="other_gateway",
                         other_kind="sync-state"),
        doc_case("since-above-version", "since 4 above version 3, signed",
                 raw_document("assignments", {**whole, "since": 4}, "gateway"), "malformed"),
        doc_case("changed-above-version", "an entry changed at version 4 in a version-3 document, signed",
                 raw_document("assignments", body(3, 0, [{**first, "changed": 4}]), "gateway"), "malformed"),
        doc_case("changed-not-after-since", "a delta since 3 holding an entry changed at 3, signed",
                 raw_document("assignments", body(4, 3, [{**first, "changed": 3}]), "gateway"), "malformed"),
        doc_case("unknown-status", "status 'done', signed",
                 raw_document("assignments", body(3, 0, [{**first, "status": "done"}]), "gateway"), "malformed"),
        doc_case("open-with-time", "an open entry with enumerated_at_ms, signed",
                 raw_document("assignments", body(3, 0, [{**first, "enumerated_at_ms": T_RECEIVED}]), "gateway"),
                 "malformed"),
        doc_case("enumerated-without-time", "an enumerated entry without enumerated_at_ms, signed",
                 raw_document("assignments", body(3, 0, [{**first, "status": "enumerated-here"}]), "gateway"),
                 "malformed"),
        doc_case("other-institution", "an entry of institution CD-000002, signed",
                 raw_document("assignments", body(3, 0, [{**first, "entry_id": "CD-000002/00001"}]), "gateway"),
                 "malformed"),
        doc_case("out-of-order", "entries 2 then 1, signed",
                 raw_document("assignments", body(3, 0, [whole["entries"][1], first]), "gateway"), "malformed"),
        doc_case("withdrawn-in-whole", "a withdrawn entry in a whole list (since 0), signed",
                 raw_document("assignments", body(4, 0, [delta["entries"][1]]), "gateway"), "malformed"),
        doc_case("extra-member", "an entry with an extra member, signed",
                 raw_document("assignments", body(3, 0, [{**first, "note": "x"}]), "gateway"), "malformed"),
    ]
    return {
        "vectors": "assignments",
        "spec": "docs/protocol.md, section 'Assignments'",
        "procedure": [
            "Decode the container (kind assignments), verify it with the keys in 'trusted', check the body members, "
            "the entries' members and the consistency rules. The first failure gives 'expected'.",
        ],
        "trusted": ["gateway"],
        "keys": None,
        "cases": cases,
    }
