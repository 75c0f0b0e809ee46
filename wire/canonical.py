"""Canonical JSON: the one byte encoding of every signed document body.

Rules (``docs/protocol.md`` section "Canonical JSON"): UTF-8; no whitespace
outside strings; object keys ASCII, unique, sorted by code point; strings with
only ``"`` ``\\`` and U+0000..U+001F escaped (``\\b \\t \\n \\f \\r`` short, the
rest ``\\u00xx`` lowercase); integers only, no leading zeros, no ``-0``, within
+-(2**53-1); ``true``, ``false``, ``null``. This is the integer-only subset of
RFC 8785 (JCS) restricted to ASCII keys, so a JCS library produces the same
bytes.

``decode`` accepts exactly the bytes ``encode`` produces and raises
``NonCanonicalError`` for anything else that is valid JSON.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import DecodeError, NonCanonicalError, OversizeError

__all__ = ["MAX_SAFE_INT", "decode", "encode"]

MAX_SAFE_INT = 2**53 - 1


def _check(value: Any, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise OversizeError("JSON nested too deeply", max_depth=max_depth)
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise DecodeError("integer out of range")
        return
    if isinstance(value, list):
        for item in value:
            _check(item, depth + 1, max_depth)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise DecodeError("object keys must be ASCII strings")
            _check(item, depth + 1, max_depth)
        return
    raise DecodeError(f"type not allowed in canonical JSON: {type(value).__name__}")


def encode(value: Any, *, max_depth: int = 32) -> bytes:
    """Encode ``value`` canonically. Raises ``DecodeError`` for values outside the subset."""
    _check(value, 0, max_depth)
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, UnicodeEncodeError) as e:
        raise DecodeError("value cannot be encoded canonically") from e


def _reject_float(text: str) -> Any:
    raise DecodeError("numbers must be integers")


def _reject_constant(text: str) -> Any:
    raise DecodeError(f"constant not allowed: {text}")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DecodeError("duplicate object key")
        out[key] = value
    return out


def decode(data: bytes, *, max_bytes: int, max_depth: int = 32) -> Any:
    """Decode canonical JSON bytes; any other encoding of the same value is refused."""
    if len(data) > max_bytes:
        raise OversizeError("JSON document too large", size=len(data), limit=max_bytes)
    try:
        text = data.decode("utf-8", errors="strict")
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except DecodeError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DecodeError("not valid JSON") from e
    if encode(value, max_depth=max_depth) != data:
        raise NonCanonicalError("JSON is not in canonical form")
    return value
