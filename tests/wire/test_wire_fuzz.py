"""Decoders fed random and mutated input raise only ``wire.errors.WireError``.

And the stronger property of the envelope and the documents: a mutated input
that still passes every check is byte-identical to the original.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey

import wire
from wire import canonical
from wire.documents import DocKind, decode_document, sign_document
from wire.errors import WireError
from wire.keyids import key_id

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"tests/wire/fuzz/" + label.encode()).digest()


DEVICE = SigningKey(_secret("device"))
DEVICE_PUB = bytes(DEVICE.verify_key)
GATEWAY = SigningKey(_secret("gateway"))
GATEWAY_PUB = bytes(GATEWAY.verify_key)
GATEWAYS = {key_id(GATEWAY_PUB): GATEWAY_PUB}
DATA_SEC = _secret("data")
DATA_PUB = bytes(crypto_scalarmult_base(DATA_SEC))
T = 1_760_000_000_000

ENVELOPE = wire.seal_batch(device_id="TAB-1", seq=3, sheets=[{"a": 1}, {"b": "é"}], sealed_at_ms=T,
                           device_key=DEVICE, data_public_key=DATA_PUB, ephemeral_secret=_secret("eph"))


def full_envelope(data: bytes) -> list[Any]:
    env = wire.decode_envelope(data)
    return wire.open_envelope(wire.verify_envelope(env, DEVICE_PUB), DATA_PUB, DATA_SEC)


def only_wire_errors(fn: Callable[[], Any]) -> bool:
    """True if ``fn`` returned, False if it raised a WireError; anything else propagates."""
    try:
        fn()
    except WireError:
        return False
    return True


# Documents of every kind, valid, signed by the key their parser trusts.
HASH = hashlib.sha256(b"x").digest()
USB = wire.UsbHints("04e8", "6860", "R58")
SNAPSHOT = wire.make_snapshot(
    version=2, issued_at_ms=T, expires_at_ms=T + 1000, data_public_key=DATA_PUB, gateway_public_keys=[GATEWAY_PUB],
    tablets=[wire.TabletEntry("TAB-1", key_id(DEVICE_PUB), DEVICE_PUB, "S", "I", "W", "issued", T, None)],
    stations=[wire.StationEntry("ST-1", key_id(GATEWAY_PUB), GATEWAY_PUB, "active")], root_key=GATEWAY)
DOCUMENTS: dict[str, tuple[bytes, Callable[[bytes], Any]]] = {
    "receipt": (
        wire.make_receipt(batch_hash=HASH, device_id="TAB-1", seq=3, received_at_ms=T, road="station:ST-1",
                          sheets_accepted=2, sheets_quarantined=0, gateway_key=GATEWAY),
        lambda d: wire.parse_receipt(d, GATEWAYS),
    ),
    "snapshot": (SNAPSHOT, lambda d: wire.accept_snapshot(d, GATEWAY_PUB, now_ms=T, min_version=2)),
    "manifest": (
        wire.make_manifest(device_id="TAB-1", usb_serial="R58", created_at_ms=T,
                           batches=[wire.ManifestEntry("00000003.SQB", 3, len(ENVELOPE), HASH)], device_key=DEVICE),
        lambda d: wire.parse_manifest(d, DEVICE_PUB),
    ),
    "manifest-peek": (
        wire.make_manifest(device_id="TAB-1", usb_serial="R58", created_at_ms=T, batches=[], device_key=DEVICE),
        wire.peek_manifest_signer,
    ),
    "custody": (
        wire.make_custody(station_id="ST-1", device_id="TAB-1", pulled_at_ms=T, manifest_sha256=HASH,
                          batches=[(3, HASH)], usb=USB, station_key=GATEWAY),
        lambda d: wire.parse_custody(d, GATEWAY_PUB),
    ),
    "sync-state": (
        wire.make_sync_state(device_id="TAB-1", issued_at_ms=T, highest_contiguous=1, max_seq=3, gaps=[(2, 2)],
                             last_sync_ms=T, gateway_key=GATEWAY),
        lambda d: wire.parse_sync_state(d, GATEWAYS),
    ),
    "access-codes": (
        wire.make_access_codes(web_id="WEB-1", issued_at_ms=T, pepper_id="0123456789abcdef", since=0, latest=1,
                               codes=[wire.AccessCodeChange(
            1, HASH.hex(), "AB-000001/00001", "AB-000001", "childrens_home", "W-17", "active")], gateway_key=GATEWAY),
        lambda d: wire.parse_access_codes(d, GATEWAYS),
    ),
    "assignments": (
        wire.make_assignments(device_id="TAB-1", institution="AB-000001", issued_at_ms=T, version=2, since=0,
                              entries=[wire.Assignment("AB-000001/00001", "enumerated-here", T, "A", "B", "",
                                                       "1950-01-01", 2)], gateway_key=GATEWAY),
        lambda d: wire.parse_assignments(d, GATEWAYS),
    ),
}
PARSERS = [parse for _, parse in DOCUMENTS.values()]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few flips, insertions, deletions or a truncation."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


# --- envelope -------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_to_envelope(data: bytes) -> None:
    assert not only_wire_errors(lambda: full_envelope(data))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_after_a_valid_prefix(tail: bytes) -> None:
    assert not only_wire_errors(lambda: full_envelope(b"SNQB\x01\x05TAB-1" + tail))


@FUZZ
@given(mutated(ENVELOPE))
def test_mutated_envelope_never_verifies(data: bytes) -> None:
    if only_wire_errors(lambda: full_envelope(data)):
        assert data == ENVELOPE


# --- documents ------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(list(DocKind)))
def test_random_bytes_to_decode_document(data: bytes, kind: DocKind) -> None:
    only_wire_errors(lambda: decode_document(data, kind))
    only_wire_errors(lambda: decode_document(kind.magic + b"\x01" + data, kind))


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(PARSERS))
def test_random_bytes_to_parsers(data: bytes, parse: Callable[[bytes], Any]) -> None:
    assert not only_wire_errors(lambda: parse(data))


@FUZZ
@given(st.sampled_from(sorted(DOCUMENTS)).flatmap(lambda n: st.tuples(st.just(n), mutated(DOCUMENTS[n][0]))))
def test_mutated_documents_never_verify(named: tuple[str, bytes]) -> None:
    name, data = named
    original, parse = DOCUMENTS[name]
    if only_wire_errors(lambda: parse(data)) and name != "manifest-peek":
        assert data == original


# Bodies with the right member names but random values, correctly signed: the
# member checks behind the signature must refuse them with a WireError too.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", max_size=15),
                                                                inner, max_size=3),
    max_leaves=8,
)
MEMBERS = {
    DocKind.RECEIPT: ("batch_hash", "device_id", "seq", "received_at_ms", "road", "sheets_accepted",
                      "sheets_quarantined"),
    DocKind.SNAPSHOT: ("version", "issued_at_ms", "expires_at_ms", "data_key", "gateway_keys", "tablets",
                       "stations"),
    DocKind.MANIFEST: ("device_id", "usb_serial", "created_at_ms", "batches"),
    DocKind.CUSTODY: ("station_id", "device_id", "pulled_at_ms", "manifest_sha256", "batches", "usb"),
    DocKind.SYNC_STATE: ("device_id", "issued_at_ms", "highest_contiguous", "max_seq", "gaps", "last_sync_ms"),
    DocKind.ACCESS_CODES: ("web_id", "issued_at_ms", "pepper_id", "since", "latest", "codes"),
    DocKind.ASSIGNMENTS: ("device_id", "institution", "issued_at_ms", "version", "since", "entries"),
}
VALID_OF_KIND = {kind: DOCUMENTS[name][0] for kind, name in (
    (DocKind.RECEIPT, "receipt"), (DocKind.SNAPSHOT, "snapshot"), (DocKind.MANIFEST, "manifest"),
    (DocKind.CUSTODY, "custody"), (DocKind.SYNC_STATE, "sync-state"), (DocKind.ACCESS_CODES, "access-codes"),
    (DocKind.ASSIGNMENTS, "assignments"))}
PARSE_KIND: dict[DocKind, Callable[[bytes], Any]] = {
    DocKind.RECEIPT: DOCUMENTS["receipt"][1],
    DocKind.SNAPSHOT: DOCUMENTS["snapshot"][1],
    DocKind.MANIFEST: DOCUMENTS["manifest"][1],
    DocKind.CUSTODY: DOCUMENTS["custody"][1],
    DocKind.SYNC_STATE: DOCUMENTS["sync-state"][1],
    DocKind.ACCESS_CODES: DOCUMENTS["access-codes"][1],
    DocKind.ASSIGNMENTS: DOCUMENTS["assignments"][1],
}


@st.composite
def signed_random_body(draw: st.DrawFn) -> tuple[DocKind, bytes]:
    kind = draw(st.sampled_from(list(MEMBERS)))  # certificates: tests/wire/test_wire_certificate.py
    valid = decode_document(VALID_OF_KIND[kind], kind).body
    body: dict[str, Any] = {"v": 1}
    for member in MEMBERS[kind]:
        body[member] = draw(st.one_of(st.just(valid[member]), JSON, st.lists(JSON, max_size=2),
                                      st.lists(st.fixed_dictionaries({}, optional=dict.fromkeys(_inner(kind), JSON)),
                                               max_size=2)))
    signer = DEVICE if kind is DocKind.MANIFEST else GATEWAY
    return kind, sign_document(kind, body, signer)


def _inner(kind: DocKind) -> tuple[str, ...]:
    return {
        DocKind.SNAPSHOT: ("device_id", "key_id", "public_key", "status", "station_id", "usb_serial",
                           "institution", "worker_id", "issued_at_ms", "returned_at_ms"),
        DocKind.MANIFEST: ("file", "seq", "size", "sha256"),
        DocKind.CUSTODY: ("seq", "batch_hash", "vendor_id", "product_id", "serial"),
        DocKind.ACCESS_CODES: ("version", "code_hash", "entry_id", "institution_code", "institution_kind",
                               "worker_id", "status"),
        DocKind.ASSIGNMENTS: ("entry_id", "status", "enumerated_at_ms", "surname", "given_name", "patronymic",
                              "birth_date", "changed"),
    }.get(kind, ())


@FUZZ
@given(signed_random_body())
def test_signed_bodies_with_random_members(case: tuple[DocKind, bytes]) -> None:
    kind, data = case
    only_wire_errors(lambda: PARSE_KIND[kind](data))


@FUZZ
@given(signed_random_body())
def test_signed_random_bodies_as_sealed_batch_bodies(case: tuple[DocKind, bytes]) -> None:
    # The same random JSON shapes as the plaintext of a correctly signed envelope.
    body = decode_document(case[1], case[0]).body
    plaintext = canonical.encode({**body, "device_id": body.get("device_id", "TAB-1")})
    ct = wire.sealing.seal(plaintext, DATA_PUB, _secret("eph2"))
    header = wire.BatchHeader("TAB-1", 3, T, 1, "census-sheet/1", key_id(DATA_PUB), hashlib.sha256(ct).digest(),
                              len(ct)).encode()
    data = header + ct + bytes(DEVICE.sign(b"sanaq-sync/v1/batch\x00" + header).signature)
    assert not only_wire_errors(lambda: full_envelope(data))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_to_canonical_decode(data: bytes) -> None:
    only_wire_errors(lambda: canonical.decode(data, max_bytes=1000))


@FUZZ
@given(st.text(alphabet=st.sampled_from('{}[],:"\\ntrufalse0123456789-.eEu'), max_size=40))
def test_json_like_text_to_canonical_decode(text: str) -> None:
    data = text.encode()
    if only_wire_errors(lambda: canonical.decode(data, max_bytes=1000)):
        assert canonical.encode(canonical.decode(data, max_bytes=1000)) == data
