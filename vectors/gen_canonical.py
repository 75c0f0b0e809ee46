"""canonical_json.json: values with their one canonical encoding, and byte strings a decoder refuses."""

from __future__ import annotations

from typing import Any

from wire import canonical

__all__ = ["canonical_vectors"]


def _nest(depth: int, inner: Any) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


ENCODE = [
    ("empty-object", {}),
    ("empty-array", []),
    ("empty-string", ""),
    ("zero", 0),
    ("negative", -1),
    ("max-safe-int", 9007199254740991),
    ("min-safe-int", -9007199254740991),
    ("literals", [True, False, None]),
    ("key-order", {"b": 1, "a": 2, "aa": 3, "B": 4, "_": 5, "": 6, "a0": 7}),
    ("nested", {"z": {"y": [1, {"x": []}]}, "a": [[], {}]}),
    ("escapes", "\"\\\b\f\n\r\t\u0000\u0001\u001f"),
    ("not-escaped", "/ \u007f \u2028 \u00e9"),
    ("utf8", "Алматы қаласы"),
    ("utf8-4-byte", "\U0001f600"),
    ("control-in-key", {"\n": 1, "\u0000": 2}),
    ("depth-32", _nest(32, 0)),
    ("depth-32-empty", _nest(33, [])[0]),
]

# (name, bytes, expected code, why)
REJECT: list[tuple[str, bytes, str, str]] = [
    ("empty-input", b"", "malformed", "no value"),
    ("space-after-colon", b'{"a": 1}', "non-canonical", "whitespace outside strings"),
    ("leading-space", b" {}", "non-canonical", "whitespace outside strings"),
    ("trailing-newline", b"{}\n", "non-canonical", "whitespace outside strings"),
    ("unsorted-keys", b'{"b":1,"a":2}', "non-canonical", "keys not sorted"),
    ("uppercase-first", b'{"a":1,"B":2}', "non-canonical", "keys sort by code point: B (0x42) before a"),
    ("duplicate-key", b'{"a":1,"a":1}', "malformed", "duplicate member"),
    ("escaped-slash", b'"\\/"', "non-canonical", "solidus is never escaped"),
    ("escaped-letter", b'"\\u0041"', "non-canonical", "printable ASCII is never escaped"),
    ("escaped-non-ascii", b'"\\u00e9"', "non-canonical", "non-ASCII is raw UTF-8"),
    ("uppercase-escape", b'"\\u001F"', "non-canonical", "\\u escapes use lowercase hex"),
    ("long-form-newline", b'"\\u000a"', "non-canonical", "newline has the short form \\n"),
    ("escaped-del", b'"\\u007f"', "non-canonical", "U+007F is not escaped"),
    ("raw-control", b'"\x01"', "malformed", "raw control character in a string"),
    ("lone-surrogate", b'"\\ud800"', "malformed", "not a Unicode scalar value"),
    ("invalid-utf8", b'"\xff"', "malformed", "not UTF-8"),
    ("overlong-utf8", b'"\xc0\xaf"', "malformed", "overlong UTF-8"),
    ("bom", b"\xef\xbb\xbf{}", "malformed", "byte order mark"),
    ("fraction", b"1.0", "malformed", "numbers are integers"),
    ("exponent", b"1e3", "malformed", "numbers are integers"),
    ("negative-zero", b"-0", "non-canonical", "-0 is written 0"),
    ("leading-zero", b"01", "malformed", "not JSON"),
    ("plus-sign", b"+1", "malformed", "not JSON"),
    ("above-max-safe", b"9007199254740992", "malformed", "integer outside +-(2**53-1)"),
    ("below-min-safe", b"-9007199254740992", "malformed", "integer outside +-(2**53-1)"),
    ("nan", b"NaN", "malformed", "not JSON"),
    ("infinity", b"Infinity", "malformed", "not JSON"),
    ("single-quotes", b"{'a':1}", "malformed", "not JSON"),
    ("trailing-comma", b"[1,]", "malformed", "not JSON"),
    ("trailing-garbage", b"{}x", "malformed", "not JSON"),
    ("two-values", b"{}{}", "malformed", "not JSON"),
    ("non-ascii-key", '{"é":1}'.encode(), "malformed", "object keys are ASCII"),
    ("depth-33", canonical.encode(_nest(32, 0)).replace(b"0", b"[0]"), "oversize",
     "a value enclosed by 33 arrays"),
]

ENCODE_REJECT = [
    ("fraction", 1.5, "malformed"),
    ("above-max-safe", 9007199254740992, "malformed"),
    ("non-ascii-key", {"é": 1}, "malformed"),
    ("depth-33", _nest(33, 0), "oversize"),
]


def canonical_vectors() -> dict[str, Any]:
    encode = []
    for name, value in ENCODE:
        out = canonical.encode(value)
        encode.append({"name": name, "value": value, "canonical": out.decode("utf-8"), "canonical_hex": out.hex()})
    return {
        "vectors": "canonical_json",
        "spec": "docs/protocol.md, section 'Canonical JSON'",
        "procedure": [
            "'encode': encoding 'value' gives exactly 'canonical_hex' (UTF-8 of 'canonical'); decoding those bytes "
            "gives 'value' back.",
            "'reject': decoding 'input_hex' fails with 'expected'.",
            "'encode_reject': encoding 'value' fails with 'expected' (the value is outside the canonical subset).",
            "Decoding limits: max_bytes 16777216, max_depth 32 (no value enclosed by more than 32 arrays/objects).",
        ],
        "encode": encode,
        "reject": [{"name": n, "input_hex": b.hex(), "expected": code, "why": why} for n, b, code, why in REJECT],
        "encode_reject": [{"name": n, "value": v, "expected": code} for n, v, code in ENCODE_REJECT],
    }
