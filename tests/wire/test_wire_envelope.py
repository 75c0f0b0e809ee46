"""The batch envelope: every length boundary, every verification failure, every truncation point.

Envelopes with arbitrary (also invalid) fields are built by ``raw`` below with
``struct``, independently of ``wire.envelope``; a valid one built that way must
equal what ``seal_batch`` writes.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey

from wire import canonical, sealing
from wire.envelope import (
    MAX_SEQ,
    SIGN_LABEL,
    VerifiedEnvelope,
    check_device_id,
    decode_envelope,
    open_batch,
    open_envelope,
    seal_batch,
    verify_envelope,
)
from wire.errors import (
    BadSignatureError,
    BindingError,
    DecodeError,
    HashMismatchError,
    OversizeError,
    TrailingBytesError,
    TruncatedError,
    UnsupportedVersionError,
    WireError,
    WrongRecipientError,
)
from wire.keyids import key_id
from wire.limits import DEFAULT_LIMITS, Limits


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"tests/wire/envelope/" + label.encode()).digest()


DEVICE_KEY = SigningKey(_secret("device"))
DEVICE_PUB = bytes(DEVICE_KEY.verify_key)
ATTACKER_KEY = SigningKey(_secret("attacker"))
ATTACKER_PUB = bytes(ATTACKER_KEY.verify_key)
DATA_SEC = _secret("data")
DATA_PUB = bytes(crypto_scalarmult_base(DATA_SEC))
OTHER_SEC = _secret("other-data")
OTHER_PUB = bytes(crypto_scalarmult_base(OTHER_SEC))
EPH = _secret("ephemeral")
T = 1_760_000_000_000
L = 2**252 + 27742317777372353535851937790883648493
SHEETS = [{"sheet_id": "S-1", "n": 1}, {"sheet_id": "S-2", "note": "Алматы"}]


def body(device_id: str = "TAB-1", seq: int = 1, sheets: list[Any] | None = None) -> bytes:
    return canonical.encode({"device_id": device_id, "seq": seq, "sheets": SHEETS if sheets is None else sheets,
                             "v": 1})


def raw(
    *,
    plaintext: bytes | None = None,
    ciphertext: bytes | None = None,
    device_id: bytes = b"TAB-1",
    seq: int = 1,
    sealed_at_ms: int = T,
    record_count: int = 2,
    schema: bytes = b"census-sheet/1",
    recipient_pub: bytes = DATA_PUB,
    key: SigningKey = DEVICE_KEY,
    version: int = 1,
    ciphertext_len: int | None = None,
) -> bytes:
    """Envelope bytes with any field value; signed by ``key`` over whatever header results."""
    if ciphertext is None:
        ciphertext = sealing.seal(body() if plaintext is None else plaintext, recipient_pub, EPH)
    header = (
        b"SNQB" + bytes([version, len(device_id)]) + device_id + struct.pack(">QQI", seq, sealed_at_ms, record_count)
        + bytes([len(schema)]) + schema + key_id(recipient_pub) + hashlib.sha256(ciphertext).digest()
        + struct.pack(">I", len(ciphertext) if ciphertext_len is None else ciphertext_len)
    )
    return header + ciphertext + bytes(key.sign(SIGN_LABEL + header).signature)


def pipeline(data: bytes, *, device_pub: bytes = DEVICE_PUB, data_pub: bytes = DATA_PUB,
             data_sec: bytes = DATA_SEC, limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    env = decode_envelope(data, limits)
    return open_envelope(verify_envelope(env, device_pub), data_pub, data_sec, limits)


def code_of(data: bytes, **kw: Any) -> str:
    try:
        pipeline(data, **kw)
    except WireError as e:
        return e.code
    return "ok"


GOOD = seal_batch(device_id="TAB-1", seq=1, sheets=SHEETS, sealed_at_ms=T, device_key=DEVICE_KEY,
                  data_public_key=DATA_PUB, ephemeral_secret=EPH)


def test_round_trip_and_independent_layout() -> None:
    assert raw() == GOOD
    env = decode_envelope(GOOD)
    h = env.header
    assert (h.device_id, h.seq, h.sealed_at_ms, h.record_count, h.schema) == ("TAB-1", 1, T, 2, "census-sheet/1")
    assert h.recipient_key_id == key_id(DATA_PUB)
    assert env.batch_hash == hashlib.sha256(GOOD).digest()
    verified = verify_envelope(env, DEVICE_PUB)
    assert isinstance(verified, VerifiedEnvelope)
    assert verified.signer_key_id == key_id(DEVICE_PUB)
    assert open_envelope(verified, DATA_PUB, DATA_SEC) == SHEETS


def test_open_batch_gives_each_sheet_as_sealed() -> None:
    opened = open_batch(verify_envelope(decode_envelope(GOOD), DEVICE_PUB), DATA_PUB, DATA_SEC)
    assert opened.sheets == SHEETS
    assert opened.sheet_bytes == [canonical.encode(s) for s in SHEETS]
    assert b",".join(opened.sheet_bytes) in body()


def test_sealing_is_deterministic_in_its_inputs_and_libsodium_compatible() -> None:
    again = seal_batch(device_id="TAB-1", seq=1, sheets=SHEETS, sealed_at_ms=T, device_key=DEVICE_KEY,
                       data_public_key=DATA_PUB, ephemeral_secret=EPH)
    other = seal_batch(device_id="TAB-1", seq=1, sheets=SHEETS, sealed_at_ms=T, device_key=DEVICE_KEY,
                       data_public_key=DATA_PUB, ephemeral_secret=_secret("ephemeral-2"))
    assert again == GOOD
    assert other != GOOD
    assert pipeline(other) == SHEETS
    from nacl.public import PrivateKey, SealedBox

    ct = decode_envelope(GOOD).ciphertext
    assert SealedBox(PrivateKey(DATA_SEC)).decrypt(ct) == body()


# --- length and range boundaries --------------------------------------------------------

BOUNDARIES = [
    ("device-id-len-0", {"device_id": b""}, "malformed"),
    ("device-id-len-1", {"device_id": b"T"}, "ok"),
    ("device-id-len-64", {"device_id": b"T" * 64}, "ok"),
    ("device-id-len-65", {"device_id": b"T" * 65}, "malformed"),
    ("device-id-bad-first-char", {"device_id": b".T"}, "malformed"),
    ("device-id-slash", {"device_id": b"T/1"}, "malformed"),
    ("device-id-nul", {"device_id": b"T\x00"}, "malformed"),
    ("device-id-latin1", {"device_id": b"T\xe9"}, "malformed"),
    ("schema-len-0", {"schema": b""}, "malformed"),
    ("schema-len-1", {"schema": b"s"}, "ok"),
    ("schema-len-32", {"schema": b"s" * 32}, "ok"),
    ("schema-len-33", {"schema": b"s" * 33}, "malformed"),
    ("schema-uppercase", {"schema": b"S"}, "malformed"),
    ("schema-space", {"schema": b"a b"}, "malformed"),
    ("seq-0", {"seq": 0}, "malformed"),
    ("seq-1", {"seq": 1}, "ok"),
    ("seq-max", {"seq": MAX_SEQ}, "ok"),
    ("seq-max-plus-1", {"seq": MAX_SEQ + 1}, "malformed"),
    ("seq-2p64-1", {"seq": 2**64 - 1}, "malformed"),
    ("sealed-at-0", {"sealed_at_ms": 0}, "malformed"),
    ("sealed-at-1", {"sealed_at_ms": 1}, "ok"),
    ("sealed-at-max", {"sealed_at_ms": MAX_SEQ}, "ok"),
    ("sealed-at-max-plus-1", {"sealed_at_ms": MAX_SEQ + 1}, "malformed"),
    ("version-0", {"version": 0}, "unsupported-version"),
    ("version-2", {"version": 2}, "unsupported-version"),
    ("version-255", {"version": 255}, "unsupported-version"),
]


@pytest.mark.parametrize(("fields", "expected"), [pytest.param(f, e, id=n) for n, f, e in BOUNDARIES])
def test_header_boundary(fields: dict[str, Any], expected: str) -> None:
    device_id = fields.get("device_id", b"TAB-1").decode("latin-1")
    plaintext = body(device_id, fields.get("seq", 1) if fields.get("seq", 1) <= MAX_SEQ else 1)
    assert code_of(raw(plaintext=plaintext, **fields)) == expected


def test_max_seq_is_the_largest_json_safe_integer() -> None:
    assert MAX_SEQ == canonical.MAX_SAFE_INT == 2**53 - 1


@pytest.mark.parametrize(("count", "expected"), [(0, "malformed"), (1, "ok"), (1000, "ok"), (1001, "oversize")])
def test_record_count_boundary(count: int, expected: str) -> None:
    sheets = [{} for _ in range(count)]
    assert code_of(raw(plaintext=body(sheets=sheets), record_count=count)) == expected


def test_record_count_limit_is_configurable() -> None:
    limits = Limits(max_records_per_batch=2)
    assert code_of(GOOD, limits=limits) == "ok"
    three = raw(plaintext=body(sheets=[{}, {}, {}]), record_count=3)
    assert code_of(three, limits=limits) == "oversize"


def test_ciphertext_length_boundaries() -> None:
    short = sealing.seal(b"", DATA_PUB, EPH)
    assert len(short) == sealing.SEAL_OVERHEAD == 48
    # 48 bytes is structurally fine (then the empty body is not JSON); 47 is not.
    assert code_of(raw(ciphertext=short)) == "malformed"
    decode_envelope(raw(ciphertext=short))
    with pytest.raises(DecodeError) as e47:
        decode_envelope(raw(ciphertext=short[:47]))
    assert type(e47.value) is DecodeError
    ct_len = len(decode_envelope(GOOD).ciphertext)
    at_limit = Limits(max_ciphertext_bytes=ct_len)
    assert code_of(GOOD, limits=at_limit) == "ok"
    with pytest.raises(OversizeError):
        decode_envelope(GOOD, Limits(max_ciphertext_bytes=ct_len - 1))
    default_over = raw(ciphertext=short, ciphertext_len=DEFAULT_LIMITS.max_ciphertext_bytes + 1)
    with pytest.raises(OversizeError):
        decode_envelope(default_over)
    with pytest.raises(OversizeError):
        decode_envelope(raw(ciphertext=short, ciphertext_len=2**32 - 1))


def test_ciphertext_len_field_disagreeing_with_the_bytes() -> None:
    ct = decode_envelope(GOOD).ciphertext
    with pytest.raises(TruncatedError):
        decode_envelope(raw(ciphertext=ct, ciphertext_len=len(ct) + 1))
    with pytest.raises(TrailingBytesError):
        decode_envelope(raw(ciphertext=ct, ciphertext_len=len(ct) - 1))


def test_envelope_size_limit() -> None:
    assert code_of(GOOD, limits=Limits(max_envelope_bytes=len(GOOD))) == "ok"
    with pytest.raises(OversizeError):
        decode_envelope(GOOD, Limits(max_envelope_bytes=len(GOOD) - 1))
    with pytest.raises(OversizeError):
        decode_envelope(b"SNQB" + bytes(DEFAULT_LIMITS.max_envelope_bytes - 3))


@pytest.mark.parametrize("extra", [b"\x00", b"\xff" * 64, GOOD])
def test_trailing_bytes(extra: bytes) -> None:
    with pytest.raises(TrailingBytesError):
        decode_envelope(GOOD + extra)


def test_every_truncation_point_is_truncated() -> None:
    for n in range(len(GOOD)):
        with pytest.raises(DecodeError) as exc:
            decode_envelope(GOOD[:n])
        assert type(exc.value) is TruncatedError, n


def test_every_truncation_of_an_odd_envelope_is_a_decode_error() -> None:
    odd = raw(device_id=b"T" * 64, schema=b"s" * 32, plaintext=body("T" * 64))
    for n in range(len(odd)):
        with pytest.raises(DecodeError) as exc:
            decode_envelope(odd[:n])
        assert type(exc.value) in (TruncatedError, DecodeError), n


# --- every byte is covered ----------------------------------------------------------------


def _regions(data: bytes) -> list[tuple[range, set[str]]]:
    env = decode_envelope(data)
    dev = len(env.header.device_id)
    sch = len(env.header.schema)
    seq_at = 6 + dev
    rcpt_at = seq_at + 8 + 8 + 4 + 1 + sch
    hash_at = rcpt_at + 16
    ct_at = hash_at + 32 + 4
    sig_at = len(data) - 64
    structural = {"malformed", "truncated", "trailing-bytes", "oversize", "bad-signature"}
    return [
        (range(4), {"malformed"}),
        (range(4, 5), {"unsupported-version"}),
        (range(5, 6), structural),
        (range(6, seq_at), {"bad-signature", "malformed"}),
        (range(seq_at, seq_at + 16), {"bad-signature", "malformed"}),
        (range(seq_at + 16, seq_at + 20), {"bad-signature", "malformed", "oversize"}),
        (range(seq_at + 20, seq_at + 21), structural),
        (range(seq_at + 21, rcpt_at), {"bad-signature", "malformed"}),
        (range(rcpt_at, hash_at), {"bad-signature"}),
        (range(hash_at, hash_at + 32), {"hash-mismatch"}),
        (range(hash_at + 32, ct_at), structural),
        (range(ct_at, sig_at), {"hash-mismatch"}),
        (range(sig_at, len(data)), {"bad-signature"}),
    ]


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_any_changed_byte_is_refused(mask: int) -> None:
    regions = _regions(GOOD)
    assert sum(len(r) for r, _ in regions) == len(GOOD)
    for region, allowed in regions:
        for i in region:
            changed = GOOD[:i] + bytes([GOOD[i] ^ mask]) + GOOD[i + 1 :]
            assert code_of(changed) in allowed, (i, mask, code_of(changed))


# --- authenticity and binding --------------------------------------------------------------


def test_malleated_signature_s_plus_l_is_refused() -> None:
    s = int.from_bytes(GOOD[-32:], "little")
    assert s < L
    malleated = GOOD[:-32] + (s + L).to_bytes(32, "little")
    with pytest.raises(BadSignatureError):
        verify_envelope(decode_envelope(malleated), DEVICE_PUB)


@pytest.mark.parametrize("device_pub", [ATTACKER_PUB, bytes(32), b"\x01" + bytes(31), DEVICE_PUB[:31]])
def test_other_or_bad_device_keys_do_not_verify(device_pub: bytes) -> None:
    with pytest.raises(BadSignatureError):
        verify_envelope(decode_envelope(GOOD), device_pub)


def test_forged_by_a_holder_of_the_data_key_without_the_device_key() -> None:
    forged = raw(plaintext=body(), key=ATTACKER_KEY)
    assert code_of(forged) == "bad-signature"


def test_surreptitious_forwarding_is_refused() -> None:
    # The data-key holder opens the victim's batch, re-seals the body to another
    # authority's data key and signs it with its own enrolled key under its own id.
    plaintext = sealing.open_sealed(decode_envelope(GOOD).ciphertext, DATA_PUB, DATA_SEC)
    forwarded = raw(ciphertext=sealing.seal(plaintext, OTHER_PUB, _secret("eph-fwd")), device_id=b"EVIL-1",
                    recipient_pub=OTHER_PUB, key=ATTACKER_KEY)
    env = verify_envelope(decode_envelope(forwarded), ATTACKER_PUB)
    with pytest.raises(BindingError):
        open_envelope(env, OTHER_PUB, OTHER_SEC)
    # ... and keeping the victim's device id instead fails the signature.
    kept = raw(ciphertext=sealing.seal(plaintext, OTHER_PUB, _secret("eph-fwd")), recipient_pub=OTHER_PUB,
               key=ATTACKER_KEY)
    assert code_of(kept, data_pub=OTHER_PUB, data_sec=OTHER_SEC) == "bad-signature"


def test_wrong_recipient_and_wrong_secret() -> None:
    verified = verify_envelope(decode_envelope(GOOD), DEVICE_PUB)
    with pytest.raises(WrongRecipientError):
        open_envelope(verified, OTHER_PUB, OTHER_SEC)
    with pytest.raises(DecodeError):
        open_envelope(verified, DATA_PUB, OTHER_SEC)
    lying = raw(ciphertext=sealing.seal(body(), OTHER_PUB, EPH))  # header names DATA_PUB
    assert code_of(lying) == "malformed"


BINDING = [
    ("other-seq", body(seq=2), 2, "binding-mismatch"),
    ("other-device", body("TAB-2"), 2, "binding-mismatch"),
    ("fewer-sheets", body(sheets=[{}]), 2, "binding-mismatch"),
    ("more-sheets", body(sheets=[{}, {}, {}]), 2, "binding-mismatch"),
    ("seq-true", b'{"device_id":"TAB-1","seq":true,"sheets":[{},{}],"v":1}', 2, "binding-mismatch"),
    ("seq-string", b'{"device_id":"TAB-1","seq":"1","sheets":[{},{}],"v":1}', 2, "binding-mismatch"),
    ("device-null", b'{"device_id":null,"seq":1,"sheets":[{},{}],"v":1}', 2, "binding-mismatch"),
    ("sheets-object", b'{"device_id":"TAB-1","seq":1,"sheets":{"a":1},"v":1}', 1, "binding-mismatch"),
    ("v-2", b'{"device_id":"TAB-1","seq":1,"sheets":[{},{}],"v":2}', 2, "unsupported-version"),
    ("v-true", b'{"device_id":"TAB-1","seq":1,"sheets":[{},{}],"v":true}', 2, "unsupported-version"),
    ("extra-member", b'{"device_id":"TAB-1","seq":1,"sheets":[{},{}],"v":1,"w":1}', 2, "malformed"),
    ("missing-member", b'{"device_id":"TAB-1","seq":1,"sheets":[{},{}]}', 2, "malformed"),
    ("array-body", b"[]", 2, "malformed"),
    ("not-canonical", b'{"device_id":"TAB-1", "seq":1,"sheets":[{},{}],"v":1}', 2, "non-canonical"),
    ("not-json", b"\x00\x01", 2, "malformed"),
    ("empty", b"", 2, "malformed"),
]


@pytest.mark.parametrize(("plaintext", "count", "expected"), [pytest.param(p, c, e, id=n) for n, p, c, e in BINDING])
def test_sealed_body_binding(plaintext: bytes, count: int, expected: str) -> None:
    assert code_of(raw(plaintext=plaintext, record_count=count)) == expected


# --- sealing-side validation --------------------------------------------------------------

SEAL_REFUSALS = [
    ({"device_id": ""}, DecodeError),
    ({"device_id": "T" * 65}, DecodeError),
    ({"device_id": "tab 1"}, DecodeError),
    ({"seq": 0}, DecodeError),
    ({"seq": MAX_SEQ + 1}, DecodeError),
    ({"sheets": []}, DecodeError),
    ({"sheets": [{}] * 1001}, OversizeError),
    ({"sheets": [1.5]}, DecodeError),
    ({"schema": "Census"}, DecodeError),
    ({"sealed_at_ms": 0}, DecodeError),
]


@pytest.mark.parametrize(("change", "error"), SEAL_REFUSALS)
def test_seal_batch_refuses_what_decode_would_refuse(change: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"device_id": "TAB-1", "seq": 1, "sheets": SHEETS, "sealed_at_ms": T,
                            "device_key": DEVICE_KEY, "data_public_key": DATA_PUB, "ephemeral_secret": EPH, **change}
    with pytest.raises(error):
        seal_batch(**args)


@pytest.mark.parametrize(
    ("device_id", "ok"),
    [("A", True), ("TAB-00001", True), ("a.b_c-d", True), ("9" * 64, True), ("", False), ("9" * 65, False),
     ("-a", False), ("_a", False), ("a b", False), ("a\n", False), ("é", False), (None, False), (7, False)],
)
def test_check_device_id(device_id: object, ok: bool) -> None:
    if ok:
        assert check_device_id(device_id) == device_id
    else:
        with pytest.raises(DecodeError):
            check_device_id(device_id)


def test_bad_magic_and_unsupported_version_are_distinct() -> None:
    with pytest.raises(DecodeError):
        decode_envelope(b"SNQX" + GOOD[4:])
    with pytest.raises(UnsupportedVersionError):
        decode_envelope(GOOD[:4] + b"\x02" + GOOD[5:])
    with pytest.raises(HashMismatchError):
        verify_envelope(decode_envelope(GOOD[:-65] + bytes([GOOD[-65] ^ 1]) + GOOD[-64:]), DEVICE_PUB)
