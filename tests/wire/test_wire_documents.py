"""Signed documents: the container, and the rules of receipts, snapshots, manifests, custody and sync state."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey

from wire import canonical
from wire.documents import DocKind, decode_document, sign_document, verify_document
from wire.errors import (
    BadSignatureError,
    DecodeError,
    ExpiredError,
    OversizeError,
    RevokedKeyError,
    RollbackError,
    TrailingBytesError,
    TruncatedError,
    UnknownKeyError,
    UnsupportedVersionError,
    WireError,
)
from wire.keyids import key_id, parse_hex
from wire.limits import DEFAULT_LIMITS, Limits
from wire.manifest import (
    MAX_USB_SEQ,
    ManifestEntry,
    UsbHints,
    batch_file_name,
    make_custody,
    make_manifest,
    parse_custody,
    parse_manifest,
    peek_manifest_signer,
)
from wire.receipt import make_receipt, parse_receipt
from wire.snapshot import StationEntry, TabletEntry, accept_snapshot, make_snapshot
from wire.syncstate import compute_gaps, make_sync_state, parse_sync_state


def _key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(b"tests/wire/documents/" + label.encode()).digest())


ROOT, GATEWAY, TABLET, STATION, INTRUDER = (_key(n) for n in ("root", "gateway", "tablet", "station", "intruder"))


def pub(k: SigningKey) -> bytes:
    return bytes(k.verify_key)


def trusted(*keys: SigningKey) -> dict[bytes, bytes]:
    return {key_id(pub(k)): pub(k) for k in keys}


DATA_PUB = bytes(crypto_scalarmult_base(hashlib.sha256(b"data").digest()))
T = 1_760_000_000_000
HASH = hashlib.sha256(b"envelope").digest()
LABELS = {DocKind.RECEIPT: "receipt", DocKind.SNAPSHOT: "snapshot", DocKind.MANIFEST: "manifest",
          DocKind.CUSTODY: "custody", DocKind.SYNC_STATE: "sync-state", DocKind.ACCESS_CODES: "access-codes",
          DocKind.ASSIGNMENTS: "assignments", DocKind.CERTIFICATE_KEY: "certificate-key",
          DocKind.CERTIFICATE: "certificate"}


def craft(kind: DocKind, body: bytes | Any, key: SigningKey, *, version: int = 1, magic: bytes | None = None,
          label: DocKind | None = None, body_len: int | None = None) -> bytes:
    """Container bytes with any field; ``body`` raw bytes or a value encoded canonically."""
    b = body if isinstance(body, bytes) else canonical.encode(body)
    head = (magic or kind.magic) + bytes([version]) + key_id(pub(key)) + struct.pack(">I", body_len or len(b))
    return head + b + bytes(key.sign((label or kind).label + head + b).signature)


def code(fn: Any) -> str:
    try:
        fn()
    except WireError as e:
        return e.code
    return "ok"


# --- the container ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(DocKind))
def test_container_layout_and_labels(kind: DocKind) -> None:
    body = {"v": 1, "x": [1, "é"]}
    data = sign_document(kind, body, GATEWAY)
    assert data == craft(kind, body, GATEWAY)
    assert kind.label == b"sanaq-sync/v1/" + LABELS[kind].encode() + b"\x00"
    doc = decode_document(data, kind)
    assert (doc.body, doc.signer_key_id, doc.raw) == (body, key_id(pub(GATEWAY)), data)
    assert doc.digest == hashlib.sha256(data).digest()
    verify_document(doc, trusted(GATEWAY))


def test_magics_are_distinct() -> None:
    assert sorted(k.magic for k in DocKind) == [b"SNQA", b"SNQC", b"SNQK", b"SNQM", b"SNQP", b"SNQR", b"SNQS", b"SNQW",
                                                b"SNQY"]


@pytest.mark.parametrize(("signed_as", "presented_as"),
                         [(a, b) for a in DocKind for b in DocKind if a is not b],
                         ids=lambda k: k.name.lower())
def test_a_signature_for_one_kind_never_verifies_as_another(signed_as: DocKind, presented_as: DocKind) -> None:
    data = craft(presented_as, {"v": 1}, GATEWAY, label=signed_as)
    doc = decode_document(data, presented_as)
    with pytest.raises(BadSignatureError):
        verify_document(doc, trusted(GATEWAY))
    with pytest.raises(DecodeError):
        decode_document(sign_document(signed_as, {"v": 1}, GATEWAY), presented_as)


GOOD_DOC = sign_document(DocKind.RECEIPT, {"v": 1, "a": "b"}, GATEWAY)

CONTAINER_REFUSALS = [
    ("empty", b"", "truncated"),
    ("bad-magic", craft(DocKind.RECEIPT, {"v": 1}, GATEWAY, magic=b"SNQX"), "malformed"),
    ("version-0", craft(DocKind.RECEIPT, {"v": 1}, GATEWAY, version=0), "unsupported-version"),
    ("version-2", craft(DocKind.RECEIPT, {"v": 1}, GATEWAY, version=2), "unsupported-version"),
    ("trailing", GOOD_DOC + b"\x00", "trailing-bytes"),
    ("body-len-plus-1", craft(DocKind.RECEIPT, b'{"v":1}', GATEWAY, body_len=8), "truncated"),
    ("body-len-huge", craft(DocKind.RECEIPT, b'{"v":1}', GATEWAY, body_len=2**32 - 1), "oversize"),
    ("body-array", craft(DocKind.RECEIPT, [1], GATEWAY), "malformed"),
    ("body-string", craft(DocKind.RECEIPT, "v", GATEWAY), "malformed"),
    ("body-no-v", craft(DocKind.RECEIPT, {"w": 1}, GATEWAY), "unsupported-version"),
    ("body-v-2", craft(DocKind.RECEIPT, {"v": 2}, GATEWAY), "unsupported-version"),
    ("body-v-true", craft(DocKind.RECEIPT, {"v": True}, GATEWAY), "unsupported-version"),
    ("body-v-string", craft(DocKind.RECEIPT, {"v": "1"}, GATEWAY), "unsupported-version"),
    ("body-non-canonical", craft(DocKind.RECEIPT, b'{"v": 1}', GATEWAY), "non-canonical"),
    ("body-not-json", craft(DocKind.RECEIPT, b"\xff", GATEWAY), "malformed"),
    ("body-empty", craft(DocKind.RECEIPT, b"", GATEWAY), "malformed"),
]


@pytest.mark.parametrize(("data", "expected"), [pytest.param(d, e, id=n) for n, d, e in CONTAINER_REFUSALS])
def test_container_refusals(data: bytes, expected: str) -> None:
    assert code(lambda: decode_document(data, DocKind.RECEIPT)) == expected


def test_container_size_limits() -> None:
    assert code(lambda: decode_document(GOOD_DOC, DocKind.RECEIPT, max_bytes=len(GOOD_DOC))) == "ok"
    with pytest.raises(OversizeError):
        decode_document(GOOD_DOC, DocKind.RECEIPT, max_bytes=len(GOOD_DOC) - 1)
    with pytest.raises(OversizeError):
        decode_document(GOOD_DOC, DocKind.RECEIPT, Limits(max_document_bytes=len(GOOD_DOC) - 1))
    deep = craft(DocKind.RECEIPT, b'{"v":1,"x":' + b"[" * 33 + b"]" * 33 + b"}", GATEWAY)
    assert code(lambda: decode_document(deep, DocKind.RECEIPT)) == "oversize"


def test_every_truncation_point_of_a_document() -> None:
    for n in range(len(GOOD_DOC)):
        with pytest.raises(TruncatedError):
            decode_document(GOOD_DOC[:n], DocKind.RECEIPT)


def test_verify_document_refusals() -> None:
    doc = decode_document(GOOD_DOC, DocKind.RECEIPT)
    with pytest.raises(UnknownKeyError):
        verify_document(doc, trusted(INTRUDER))
    with pytest.raises(UnknownKeyError):
        verify_document(doc, {})
    with pytest.raises(BadSignatureError):  # right id, wrong key behind it
        verify_document(doc, {key_id(pub(GATEWAY)): pub(INTRUDER)})
    for i in range(len(GOOD_DOC) - 64, len(GOOD_DOC)):
        flipped = GOOD_DOC[:i] + bytes([GOOD_DOC[i] ^ 0x01]) + GOOD_DOC[i + 1 :]
        with pytest.raises(BadSignatureError):
            verify_document(decode_document(flipped, DocKind.RECEIPT), trusted(GATEWAY))


def test_any_changed_byte_of_a_document_is_refused() -> None:
    for i in range(len(GOOD_DOC)):
        flipped = GOOD_DOC[:i] + bytes([GOOD_DOC[i] ^ 0x04]) + GOOD_DOC[i + 1 :]
        assert code(lambda f=flipped: verify_document(decode_document(f, DocKind.RECEIPT), trusted(GATEWAY))) != "ok"


# --- key ids and hex ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size", "ok"),
    [("00ff", 2, True), ("00FF", 2, False), ("00f", 2, False), ("00fff", 2, False), ("0 ff", 2, False),
     ("00 f", 2, False), ("\t0ff", 2, False), ("0g00", 2, False), ("\u0660\u0660ff", 2, False), (None, 2, False),
     (17, 2, False), ("", 0, True)],
)
def test_parse_hex(text: object, size: int, ok: bool) -> None:
    if ok:
        assert parse_hex(text, size, "x") == bytes.fromhex(text)  # type: ignore[arg-type]
    else:
        with pytest.raises(DecodeError):
            parse_hex(text, size, "x")


def test_key_id_derivation() -> None:
    p = pub(ROOT)
    assert key_id(p) == hashlib.sha256(b"sanaq-sync/v1/key-id\x00" + p).digest()[:16]
    with pytest.raises(DecodeError):
        key_id(p[:31])


# --- receipts ---------------------------------------------------------------------------------

RECEIPT_BODY = {"v": 1, "batch_hash": HASH.hex(), "device_id": "TAB-1", "seq": 5, "received_at_ms": T,
                "road": "online", "sheets_accepted": 3, "sheets_quarantined": 1}


def test_receipt_round_trip() -> None:
    data = make_receipt(batch_hash=HASH, device_id="TAB-1", seq=5, received_at_ms=T, road="online",
                        sheets_accepted=3, sheets_quarantined=1, gateway_key=GATEWAY)
    assert data == craft(DocKind.RECEIPT, RECEIPT_BODY, GATEWAY)
    r = parse_receipt(data, trusted(GATEWAY, ROOT))
    assert (r.batch_hash, r.device_id, r.seq, r.received_at_ms, r.road) == (HASH, "TAB-1", 5, T, "online")
    assert (r.sheets_accepted, r.sheets_quarantined, r.signer_key_id, r.raw) == (3, 1, key_id(pub(GATEWAY)), data)


@pytest.mark.parametrize(("road", "ok"), [
    ("online", True), ("station:ST-1", True), ("station:" + "s" * 64, True), ("station:" + "s" * 65, False),
    ("station:", False), ("station:-x", False), ("Station:x", False), ("offline", False), ("online ", False),
    ("station:a b", False),
])
def test_receipt_roads(road: str, ok: bool) -> None:
    data = craft(DocKind.RECEIPT, {**RECEIPT_BODY, "road": road}, GATEWAY)
    assert code(lambda: parse_receipt(data, trusted(GATEWAY))) == ("ok" if ok else "malformed")
    if not ok:
        with pytest.raises(ValueError, match="road"):
            make_receipt(batch_hash=HASH, device_id="TAB-1", seq=5, received_at_ms=T, road=road,
                         sheets_accepted=0, sheets_quarantined=0, gateway_key=GATEWAY)


RECEIPT_REFUSALS = [
    ("seq-0", {"seq": 0}, "malformed"),
    ("seq-bool", {"seq": True}, "malformed"),
    ("received-0", {"received_at_ms": 0}, "malformed"),
    ("accepted-negative", {"sheets_accepted": -1}, "malformed"),
    ("hash-short", {"batch_hash": HASH.hex()[:62]}, "malformed"),
    ("hash-upper", {"batch_hash": HASH.hex().upper()}, "malformed"),
    ("hash-spaced", {"batch_hash": " ".join(HASH.hex()[i : i + 2] for i in range(0, 42, 2)) + "00"}, "malformed"),
    ("device-bad", {"device_id": "TAB 1"}, "malformed"),
    ("extra", {"x": 1}, "malformed"),
]


@pytest.mark.parametrize(("change", "expected"), [pytest.param(c, e, id=n) for n, c, e in RECEIPT_REFUSALS])
def test_receipt_refusals(change: dict[str, Any], expected: str) -> None:
    data = craft(DocKind.RECEIPT, {**RECEIPT_BODY, **change}, GATEWAY)
    assert code(lambda: parse_receipt(data, trusted(GATEWAY))) == expected


def test_receipt_size_and_signer() -> None:
    big = craft(DocKind.RECEIPT, {**RECEIPT_BODY, "pad": "x" * 4000}, GATEWAY)
    assert len(big) > 4096
    assert code(lambda: parse_receipt(big, trusted(GATEWAY))) == "oversize"
    data = craft(DocKind.RECEIPT, RECEIPT_BODY, INTRUDER)
    assert code(lambda: parse_receipt(data, trusted(GATEWAY))) == "unknown-key"
    missing = craft(DocKind.RECEIPT, {k: v for k, v in RECEIPT_BODY.items() if k != "road"}, GATEWAY)
    assert code(lambda: parse_receipt(missing, trusted(GATEWAY))) == "malformed"


# --- registry snapshots --------------------------------------------------------------------------


def tablet(device_id: str, key: SigningKey, status: str = "issued") -> TabletEntry:
    return TabletEntry(device_id, key_id(pub(key)), pub(key), "SER1", "INST-1", "W-1", status, T, None)


def station(station_id: str, key: SigningKey, status: str = "active") -> StationEntry:
    return StationEntry(station_id, key_id(pub(key)), pub(key), status)


def snapshot(version: int = 3, *, tablets: list[TabletEntry] | None = None, key: SigningKey = ROOT) -> bytes:
    return make_snapshot(version=version, issued_at_ms=T - 1000, expires_at_ms=T + 1000, data_public_key=DATA_PUB,
                         gateway_public_keys=[pub(GATEWAY)],
                         tablets=tablets if tablets is not None else [tablet("TAB-1", TABLET)],
                         stations=[station("ST-1", STATION), station("ST-2", INTRUDER, "revoked")], root_key=key)


@pytest.mark.parametrize(("now_ms", "min_version", "expected"), [
    (T, 0, "ok"), (T + 999, 3, "ok"), (T + 1000, 0, "expired"), (T + 10**9, 0, "expired"),
    (T, 4, "rollback"), (T + 1000, 4, "rollback"), (0, 0, "ok"),
])
def test_snapshot_expiry_and_rollback(now_ms: int, min_version: int, expected: str) -> None:
    data = snapshot()
    assert code(lambda: accept_snapshot(data, pub(ROOT), now_ms=now_ms, min_version=min_version)) == expected


def test_snapshot_errors_are_the_documented_classes() -> None:
    with pytest.raises(ExpiredError):
        accept_snapshot(snapshot(), pub(ROOT), now_ms=T + 1000)
    with pytest.raises(RollbackError):
        accept_snapshot(snapshot(), pub(ROOT), now_ms=T, min_version=4)


def test_snapshot_signer_and_lookups() -> None:
    assert code(lambda: accept_snapshot(snapshot(key=GATEWAY), pub(ROOT), now_ms=T)) == "unknown-key"
    snap = accept_snapshot(snapshot(tablets=[tablet("TAB-1", TABLET), tablet("TAB-2", _key("lost"), "lost")]),
                           pub(ROOT), now_ms=T)
    assert snap.active_tablet("TAB-1").public_key == pub(TABLET)
    assert snap.tablet("TAB-2").status == "lost"
    assert snap.active_station("ST-1").public_key == pub(STATION)
    assert snap.gateway_key_map() == trusted(GATEWAY)
    assert snap.data_key.public_key == DATA_PUB
    for fn in (lambda: snap.tablet("TAB-9"), lambda: snap.station("ST-9")):
        with pytest.raises(UnknownKeyError):
            fn()
    for fn in (lambda: snap.active_tablet("TAB-2"), lambda: snap.active_station("ST-2")):
        with pytest.raises(RevokedKeyError):
            fn()


@pytest.mark.parametrize(("status", "active"), [("issued", True), ("returned", False), ("lost", False),
                                                 ("revoked", False)])
def test_only_issued_tablets_may_sign(status: str, active: bool) -> None:
    snap = accept_snapshot(snapshot(tablets=[tablet("TAB-1", TABLET, status)]), pub(ROOT), now_ms=T)
    assert code(lambda: snap.active_tablet("TAB-1")) == ("ok" if active else "revoked")


def _snapshot_body() -> dict[str, Any]:
    return dict(decode_document(snapshot(), DocKind.SNAPSHOT).body)


def _with_tablet(**change: Any) -> dict[str, Any]:
    body = _snapshot_body()
    body["tablets"] = [{**body["tablets"][0], **change}]
    return body


SNAPSHOT_REFUSALS = [
    ("version-0", lambda: {**_snapshot_body(), "version": 0}, "malformed"),
    ("key-id-mismatch", lambda: _with_tablet(key_id=key_id(pub(INTRUDER)).hex()), "malformed"),
    ("status-unknown", lambda: _with_tablet(status="stolen"), "malformed"),
    ("device-bad", lambda: _with_tablet(device_id="TAB/1"), "malformed"),
    ("returned-negative", lambda: _with_tablet(returned_at_ms=-1), "malformed"),
    ("institution-long", lambda: _with_tablet(institution="i" * 65), "malformed"),
    ("tablet-extra", lambda: _with_tablet(extra=1), "malformed"),
    ("duplicate-device", lambda: {**_snapshot_body(), "tablets": _snapshot_body()["tablets"] * 2}, "malformed"),
    ("duplicate-station", lambda: {**_snapshot_body(), "stations": [_snapshot_body()["stations"][0]] * 2},
     "malformed"),
    ("station-with-tablet-key", lambda: {**_snapshot_body(), "stations": [
        {**_snapshot_body()["stations"][0], "key_id": key_id(pub(TABLET)).hex(), "public_key": pub(TABLET).hex()}]},
     "malformed"),
    ("station-status", lambda: {**_snapshot_body(), "stations": [{**_snapshot_body()["stations"][0],
                                                                  "status": "issued"}]}, "malformed"),
    ("data-key-id", lambda: {**_snapshot_body(), "data_key": {"key_id": "00" * 16, "public_key": DATA_PUB.hex()}},
     "malformed"),
    ("gateway-keys-17", lambda: {**_snapshot_body(), "gateway_keys": _snapshot_body()["gateway_keys"] * 17},
     "malformed"),
    ("tablets-not-list", lambda: {**_snapshot_body(), "tablets": {}}, "malformed"),
]


@pytest.mark.parametrize(("make_body", "expected"), [pytest.param(b, e, id=n) for n, b, e in SNAPSHOT_REFUSALS])
def test_snapshot_refusals(make_body: Any, expected: str) -> None:
    data = craft(DocKind.SNAPSHOT, make_body(), ROOT)
    assert code(lambda: accept_snapshot(data, pub(ROOT), now_ms=T)) == expected


# protocol.md section 9, "Verification order of a snapshot": header members, rollback, expiry, then entries.
SNAPSHOT_ORDER = [
    ("old-with-bad-entry", {"status": "stolen"}, {}, 5, T, "rollback"),
    ("expired-with-bad-entry", {"status": "stolen"}, {"expires_at_ms": T}, 0, T, "expired"),
    ("old-and-expired", {}, {"expires_at_ms": T}, 5, T, "rollback"),
    ("current-with-bad-entry", {"status": "stolen"}, {}, 0, T, "malformed"),
    ("bad-version-type-and-old", {}, {"version": "1"}, 5, T, "malformed"),
]


@pytest.mark.parametrize(("tablet_change", "body_change", "held", "now", "expected"),
                         [pytest.param(*c[1:], id=c[0]) for c in SNAPSHOT_ORDER])
def test_snapshot_verification_order(tablet_change: dict[str, Any], body_change: dict[str, Any], held: int,
                                     now: int, expected: str) -> None:
    body = {**_with_tablet(**tablet_change), **body_change}
    data = craft(DocKind.SNAPSHOT, body, ROOT)
    assert code(lambda: accept_snapshot(data, pub(ROOT), now_ms=now, min_version=held)) == expected


# --- USB manifest and custody --------------------------------------------------------------------


def entry(seq: int, size: int = 300, name: str | None = None) -> ManifestEntry:
    return ManifestEntry(name or batch_file_name(seq), seq, size, hashlib.sha256(str(seq).encode()).digest())


def manifest(entries: list[ManifestEntry], key: SigningKey = TABLET) -> bytes:
    return make_manifest(device_id="TAB-1", usb_serial="R58", created_at_ms=T, batches=entries, device_key=key)


@pytest.mark.parametrize(("seq", "name"), [(1, "00000001.SQB"), (42, "00000042.SQB"), (MAX_USB_SEQ, "99999999.SQB")])
def test_batch_file_names(seq: int, name: str) -> None:
    assert batch_file_name(seq) == name


@pytest.mark.parametrize("seq", [0, -1, MAX_USB_SEQ + 1])
def test_batch_file_name_refuses_seqs_without_a_name(seq: int) -> None:
    with pytest.raises(ValueError, match="seq"):
        batch_file_name(seq)


def test_manifest_round_trip_and_peek() -> None:
    entries = [entry(3), entry(1), entry(2)]
    data = manifest(entries)
    m = parse_manifest(data, pub(TABLET))
    assert [e.seq for e in m.batches] == [1, 2, 3]
    assert (m.device_id, m.usb_serial, m.created_at_ms, m.signer_key_id) == ("TAB-1", "R58", T, key_id(pub(TABLET)))
    assert peek_manifest_signer(data) == ("TAB-1", key_id(pub(TABLET)))
    assert parse_manifest(manifest([]), pub(TABLET)).batches == ()


MANIFEST_ENTRY_CASES = [
    ("seq-max", [entry(MAX_USB_SEQ)], "ok"),
    ("size-max", [entry(1, DEFAULT_LIMITS.max_envelope_bytes)], "ok"),
    ("size-0", [entry(1, 0)], "malformed"),
    ("size-over", [entry(1, DEFAULT_LIMITS.max_envelope_bytes + 1)], "malformed"),
    ("name-other-seq", [entry(1, name="00000002.SQB")], "malformed"),
    ("name-lowercase", [entry(1, name="00000001.sqb")], "malformed"),
    ("name-short", [entry(1, name="1.SQB")], "malformed"),
    ("name-dir", [entry(1, name="../00000001.SQB")], "malformed"),
]


@pytest.mark.parametrize(("entries", "expected"), [pytest.param(e, x, id=n) for n, e, x in MANIFEST_ENTRY_CASES])
def test_manifest_entry_rules(entries: list[ManifestEntry], expected: str) -> None:
    assert code(lambda: parse_manifest(manifest(entries), pub(TABLET))) == expected


def _manifest_body(batches: list[dict[str, Any]]) -> dict[str, Any]:
    return {"v": 1, "device_id": "TAB-1", "usb_serial": "R58", "created_at_ms": T, "batches": batches}


def _entry_json(seq: int, file: str | None = None) -> dict[str, Any]:
    return {"file": file or f"{seq:08d}.SQB", "seq": seq, "size": 10, "sha256": "00" * 32}


@pytest.mark.parametrize(("batches", "expected"), [
    ([_entry_json(2), _entry_json(1)], "malformed"),
    ([_entry_json(1), _entry_json(1)], "malformed"),
    ([_entry_json(100_000_000, "100000000.SQB")], "malformed"),
    ([_entry_json(0)], "malformed"),
    ([{**_entry_json(1), "seq": "1"}], "malformed"),
    ([[1]], "malformed"),
])
def test_manifest_crafted_refusals(batches: list[Any], expected: str) -> None:
    data = craft(DocKind.MANIFEST, _manifest_body(batches), TABLET)
    assert code(lambda: parse_manifest(data, pub(TABLET))) == expected


def test_manifest_signer_and_limits() -> None:
    data = manifest([entry(1)], key=INTRUDER)
    assert code(lambda: parse_manifest(data, pub(TABLET))) == "unknown-key"
    many = manifest([entry(1), entry(2), entry(3)])
    assert code(lambda: parse_manifest(many, pub(TABLET), Limits(max_manifest_batches=2))) == "malformed"
    assert code(lambda: parse_manifest(many, pub(TABLET), Limits(max_manifest_bytes=100))) == "oversize"
    assert code(lambda: peek_manifest_signer(craft(DocKind.MANIFEST, {"v": 1}, TABLET))) == "malformed"


USB = UsbHints("04e8", "6860", "R58")


def test_custody_round_trip_and_order() -> None:
    batches = [(2, HASH), (1, hashlib.sha256(b"1").digest())]
    data = make_custody(station_id="ST-1", device_id="TAB-1", pulled_at_ms=T, manifest_sha256=HASH,
                        batches=batches, usb=USB, station_key=STATION)
    c = parse_custody(data, pub(STATION))
    assert c.batches == tuple(sorted(batches))
    assert (c.station_id, c.device_id, c.pulled_at_ms, c.usb, c.signer_key_id) == (
        "ST-1", "TAB-1", T, USB, key_id(pub(STATION)))
    with pytest.raises(ValueError, match="twice"):
        make_custody(station_id="ST-1", device_id="TAB-1", pulled_at_ms=T, manifest_sha256=HASH,
                     batches=[(1, HASH), (1, HASH)], usb=USB, station_key=STATION)


def _custody_body(**change: Any) -> dict[str, Any]:
    body = {"v": 1, "station_id": "ST-1", "device_id": "TAB-1", "pulled_at_ms": T, "manifest_sha256": HASH.hex(),
            "batches": [{"seq": 1, "batch_hash": HASH.hex()}, {"seq": 2, "batch_hash": HASH.hex()}],
            "usb": {"vendor_id": "04e8", "product_id": "6860", "serial": "R58"}}
    return {**body, **change}


@pytest.mark.parametrize(("body", "key", "expected"), [
    (_custody_body(), STATION, "ok"),
    (_custody_body(), INTRUDER, "unknown-key"),
    (_custody_body(batches=[{"seq": 2, "batch_hash": HASH.hex()}, {"seq": 1, "batch_hash": HASH.hex()}]), STATION,
     "malformed"),
    (_custody_body(batches=[{"seq": 1, "batch_hash": HASH.hex()}] * 2), STATION, "malformed"),
    (_custody_body(usb={"vendor_id": "04e8", "product_id": "6860"}), STATION, "malformed"),
    (_custody_body(usb={"vendor_id": "x" * 17, "product_id": "6860", "serial": ""}), STATION, "malformed"),
    (_custody_body(station_id="ST 1"), STATION, "malformed"),
    (_custody_body(manifest_sha256="00"), STATION, "malformed"),
])
def test_custody_refusals(body: dict[str, Any], key: SigningKey, expected: str) -> None:
    data = craft(DocKind.CUSTODY, body, key)
    assert code(lambda: parse_custody(data, pub(STATION))) == expected


# --- sync state -----------------------------------------------------------------------------------

GAP_TABLE = [
    ([], (0, 0, [])),
    ([1], (1, 1, [])),
    ([2], (0, 2, [(1, 1)])),
    ([1, 2, 3], (3, 3, [])),
    ([3, 1, 2, 2], (3, 3, [])),
    ([1, 2, 3, 5, 8, 9], (3, 9, [(4, 4), (6, 7)])),
    ([10, 20], (0, 20, [(1, 9), (11, 19)])),
]


@pytest.mark.parametrize(("seqs", "expected"), GAP_TABLE)
def test_compute_gaps_and_round_trip(seqs: list[int], expected: tuple[int, int, list[tuple[int, int]]]) -> None:
    assert compute_gaps(seqs) == expected
    highest, max_seq, gaps = expected
    data = make_sync_state(device_id="TAB-1", issued_at_ms=T, highest_contiguous=highest, max_seq=max_seq,
                           gaps=gaps, last_sync_ms=T if seqs else None, gateway_key=GATEWAY)
    s = parse_sync_state(data, trusted(GATEWAY))
    assert (s.highest_contiguous, s.max_seq, list(s.gaps), s.last_sync_ms) == (highest, max_seq, gaps,
                                                                              T if seqs else None)


def _sync_body(highest: int, max_seq: int, gaps: list[Any]) -> dict[str, Any]:
    return {"v": 1, "device_id": "TAB-1", "issued_at_ms": T, "highest_contiguous": highest, "max_seq": max_seq,
            "gaps": gaps, "last_sync_ms": None}


@pytest.mark.parametrize(("highest", "max_seq", "gaps", "expected"), [
    (3, 9, [[4, 4], [6, 7]], "ok"),
    (4, 9, [[4, 4], [6, 7]], "malformed"),
    (2, 9, [[4, 4], [6, 7]], "malformed"),
    (3, 9, [[6, 7], [4, 4]], "malformed"),
    (3, 9, [[4, 5], [6, 7]], "malformed"),
    (3, 9, [[4, 6], [6, 7]], "malformed"),
    (3, 9, [[4, 4], [6, 9]], "malformed"),
    (3, 9, [[4, 4], [7, 6]], "malformed"),
    (0, 9, [[0, 4]], "malformed"),
    (3, 9, [[4, True]], "malformed"),
    (3, 9, [[4]], "malformed"),
    (4, 3, [], "malformed"),
    (2, 3, [], "malformed"),
    (0, 0, [], "ok"),
])
def test_sync_state_consistency(highest: int, max_seq: int, gaps: list[Any], expected: str) -> None:
    data = craft(DocKind.SYNC_STATE, _sync_body(highest, max_seq, gaps), GATEWAY)
    assert code(lambda: parse_sync_state(data, trusted(GATEWAY))) == expected


def test_sync_state_signer() -> None:
    data = craft(DocKind.SYNC_STATE, _sync_body(0, 0, []), INTRUDER)
    assert code(lambda: parse_sync_state(data, trusted(GATEWAY))) == "unknown-key"
    with pytest.raises(TrailingBytesError):
        parse_sync_state(craft(DocKind.SYNC_STATE, _sync_body(0, 0, []), GATEWAY) + b"\x00", trusted(GATEWAY))
    with pytest.raises(UnsupportedVersionError):
        parse_sync_state(craft(DocKind.SYNC_STATE, {**_sync_body(0, 0, []), "v": 2}, GATEWAY), trusted(GATEWAY))
