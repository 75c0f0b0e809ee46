"""Canonical JSON: the one encoding, its limits, and every near-miss a decoder must refuse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import canonical
from wire.errors import DecodeError, NonCanonicalError, OversizeError, WireError

BIG = 1 << 24


def nest(depth: int, inner: Any = 0) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


ENCODE = [
    (None, b"null"),
    (True, b"true"),
    (False, b"false"),
    (0, b"0"),
    (-7, b"-7"),
    (2**53 - 1, b"9007199254740991"),
    (-(2**53 - 1), b"-9007199254740991"),
    ("", b'""'),
    ("a\"b\\c", b'"a\\"b\\\\c"'),
    ("\b\t\n\f\r", b'"\\b\\t\\n\\f\\r"'),
    ("\x00\x01\x0b\x1f", b'"\\u0000\\u0001\\u000b\\u001f"'),
    ("\x7f/\u2028", '"\x7f/\u2028"'.encode()),
    ("é😀", '"é😀"'.encode()),
    ([], b"[]"),
    ({}, b"{}"),
    ([1, [2, {}]], b"[1,[2,{}]]"),
    ({"b": 1, "a": {"d": [], "c": None}}, b'{"a":{"c":null,"d":[]},"b":1}'),
    ({"a": 1, "B": 2, "_": 3, "": 4, "aa": 5, "a0": 6}, b'{"":4,"B":2,"_":3,"a":1,"a0":6,"aa":5}'),
]


@pytest.mark.parametrize(("value", "expected"), ENCODE)
def test_encode_and_decode_back(value: Any, expected: bytes) -> None:
    assert canonical.encode(value) == expected
    assert canonical.decode(expected, max_bytes=BIG) == value


def test_every_control_character_has_one_escape() -> None:
    short = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
    for cp in range(0x20):
        want = short.get(cp, f"\\u{cp:04x}")
        assert canonical.encode(chr(cp)) == f'"{want}"'.encode()
        assert canonical.decode(f'"{want}"'.encode(), max_bytes=99) == chr(cp)
        others = {f"\\u{cp:04X}", f"\\u{cp:04x}"} - {want}  # upper-case hex; long form of a short escape
        for other in others:
            with pytest.raises(NonCanonicalError):
                canonical.decode(f'"{other}"'.encode(), max_bytes=99)
    for cp in range(0x20, 0x80):
        if chr(cp) not in '"\\':
            assert canonical.encode(chr(cp)) == f'"{chr(cp)}"'.encode()
            with pytest.raises(NonCanonicalError):
                canonical.decode(f'"\\u{cp:04x}"'.encode(), max_bytes=99)


DECODE_REFUSALS = [
    (b"", DecodeError),
    (b" 1", NonCanonicalError),
    (b"1 ", NonCanonicalError),
    (b"[1, 2]", NonCanonicalError),
    (b'{"a":1,"a":2}', DecodeError),
    (b'{"b":1,"a":2}', NonCanonicalError),
    (b'"\\/"', NonCanonicalError),
    (b'"\\u00e9"', NonCanonicalError),
    (b'"\\ud83d\\ude00"', NonCanonicalError),
    (b'"\\ud800"', DecodeError),
    (b'"\\udc00x"', DecodeError),
    (b'"\x1f"', DecodeError),
    (b'"\xed\xa0\x80"', DecodeError),
    (b'"\xf4\x90\x80\x80"', DecodeError),
    (b"1.0", DecodeError),
    (b"1e0", DecodeError),
    (b"-0", NonCanonicalError),
    (b"00", DecodeError),
    (b"9007199254740992", DecodeError),
    (b"-9007199254740992", DecodeError),
    (b"1" * 5000, DecodeError),
    (b"NaN", DecodeError),
    (b"-Infinity", DecodeError),
    (b"True", DecodeError),
    (b"\xef\xbb\xbfnull", DecodeError),
    ('{"ключ":1}'.encode(), DecodeError),
    (b"[", DecodeError),
    (b"[]]", DecodeError),
    (b"\x00", DecodeError),
]


@pytest.mark.parametrize(("data", "error"), DECODE_REFUSALS)
def test_decode_refusals(data: bytes, error: type[WireError]) -> None:
    with pytest.raises(error) as exc:
        canonical.decode(data, max_bytes=BIG)
    assert type(exc.value) is error


@pytest.mark.parametrize("value", [1.5, 2**53, -(2**53), float("nan"), {"é": 1}, {1: 2}, (1, 2), {1}, b"x",
                                   "\ud800", [object()]])
def test_encode_refuses_values_outside_the_subset(value: Any) -> None:
    with pytest.raises(DecodeError):
        canonical.encode(value)


def test_depth_boundary() -> None:
    assert canonical.decode(canonical.encode(nest(32)), max_bytes=BIG) == nest(32)
    assert canonical.decode(b"[" * 33 + b"]" * 33, max_bytes=BIG) == nest(32, [])
    with pytest.raises(OversizeError):
        canonical.encode(nest(33))
    with pytest.raises(OversizeError):
        canonical.decode(b"[" * 34 + b"]" * 34, max_bytes=BIG)
    with pytest.raises(OversizeError):
        canonical.decode(b"[" * 5 + b"]" * 5, max_bytes=BIG, max_depth=3)


def test_very_deep_nesting_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError):
        canonical.decode(b"[" * 200_000 + b"]" * 200_000, max_bytes=BIG)


def test_size_boundary() -> None:
    data = canonical.encode({"k": "x" * 100})
    assert canonical.decode(data, max_bytes=len(data)) == {"k": "x" * 100}
    with pytest.raises(OversizeError):
        canonical.decode(data, max_bytes=len(data) - 1)


def test_bool_is_not_an_integer() -> None:
    assert canonical.encode([True, 1]) == b"[true,1]"
    assert canonical.decode(b"[true,1]", max_bytes=99) == [True, 1]
    assert type(canonical.decode(b"1", max_bytes=9)) is int


# --- properties ----------------------------------------------------------------------------------

SAFE_INT = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INT | st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(st.characters(max_codepoint=127)), inner,
                                                                  max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_round_trip_and_uniqueness(value: Any) -> None:
    encoded = canonical.encode(value)
    assert canonical.decode(encoded, max_bytes=BIG) == value
    assert canonical.encode(canonical.decode(encoded, max_bytes=BIG)) == encoded
    # Any other standard serialisation of the same value is refused unless byte-identical.
    for other in (json.dumps(value).encode(), json.dumps(value, indent=1).encode(),
                  json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode()):
        if other != encoded:
            with pytest.raises(NonCanonicalError):
                canonical.decode(other, max_bytes=BIG)


# --- the fast path (orjson) against the reference path (json + recursive check) -------------------------

ANY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([2**53 - 1, 2**53, -(2**53 - 1), -(2**53)]) | st.floats(allow_nan=True)
    | st.text(st.characters()) | st.binary(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner)
    | st.dictionaries(st.text(max_size=3) | st.integers(max_value=3) | st.booleans(), inner, max_size=4),
    max_leaves=20,
)


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except WireError as e:
        return type(e).__name__, str(e)


@settings(max_examples=500, deadline=None)
@given(ANY_VALUES, st.integers(min_value=-1, max_value=6))
def test_fast_encode_equals_the_reference(value: Any, max_depth: int) -> None:
    assert outcome(lambda: canonical.encode(value, max_depth=max_depth)) == outcome(
        lambda: canonical._encode_reference(value, max_depth)
    )


def json_like_bytes() -> st.SearchStrategy[bytes]:
    pieces = st.sampled_from(['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '0', '1', '-', '.', 'e', 'a', 'é',
                              '"a"', '"é"', 'true', 'null', '\\u00e9', '\\n', '\\u000a', '\x01', '9007199254740992',
                              '1.0', '"a":1', '{"a":1,"a":2}', '\ud800'])
    return st.lists(pieces, max_size=30).map(lambda p: "".join(p).encode("utf-8", "surrogatepass"))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(json_like_bytes(), st.binary(max_size=40), VALUES.map(canonical.encode)),
       st.integers(min_value=0, max_value=4))
def test_fast_decode_equals_the_reference(data: bytes, max_depth: int) -> None:
    assert outcome(lambda: canonical.decode(data, max_bytes=BIG, max_depth=max_depth)) == outcome(
        lambda: canonical._decode_reference(data, max_depth)
    )


def test_every_code_point_encodes_as_the_reference_does() -> None:
    text = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    for start in range(0, len(text), 8192):
        part = text[start : start + 8192]
        assert canonical.encode(part) == canonical._encode_reference(part, 32)
        assert canonical.decode(canonical.encode(part), max_bytes=BIG) == part


def test_encode_decoded_gives_the_parts_as_encoded() -> None:
    whole = {"a": [{"b": "é", "c": [1, None]}, "x\n", 7, True, []]}
    data = canonical.encode(whole)
    parts = canonical.encode_decoded(canonical.decode(data, max_bytes=BIG)["a"])
    assert b'{"a":[' + b",".join(parts) + b"]}" == data


def test_a_value_holding_itself_is_too_deep_on_both_paths() -> None:
    loop: list[Any] = []
    loop.extend([loop] * 1000)  # its paths multiply by 1000 at every level
    with pytest.raises(OversizeError):
        canonical.encode(loop)
    with pytest.raises(OversizeError):
        canonical._encode_reference(loop, 32)
