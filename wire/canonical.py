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

Two paths give the same results (tests/wire/test_wire_canonical.py compares
them on random values and bytes). The reference path is the standard
library's ``json`` with a recursive check of the subset. The fast path, taken
first, uses orjson, whose compact sorted output for strings, integers within
+-(2**53-1) (``OPT_STRICT_INTEGER``), ``true``/``false``/``null``, lists and
dicts with ASCII keys is exactly the canonical form, after one walk that
admits only those exact types within ``max_depth``. ``decode`` returns the
fast path's value only when re-encoding it gives back the input bytes (the
encoding is one-to-one, so it is the value the reference path returns);
anything else, including every refusal, goes through the reference path, so
each error is the reference path's, with its class and message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from .errors import DecodeError, NonCanonicalError, OversizeError

__all__ = ["MAX_SAFE_INT", "decode", "encode"]

MAX_SAFE_INT = 2**53 - 1
_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_SCALARS = frozenset({str, int, bool, type(None)})
_NESTED = frozenset({dict, list})
_NOT_BYTES = object()
# Containers one level of the walk may hold: beyond it (a huge value, or one list shared many times or
# holding itself, whose paths multiply level by level) the reference path's depth-first check decides.
_MAX_LEVEL = 1 << 20


def _plain(value: Any, max_depth: int) -> bool:
    """``value`` holds only dict/list/str/int/bool/None (exact types), ASCII string keys, depth <= ``max_depth``.

    Integer range is left to orjson (``OPT_STRICT_INTEGER`` refuses the rest).
    """
    if max_depth < 0:
        return False
    kind = type(value)
    if kind not in _NESTED:
        return kind in _SCALARS
    level: list[Any] = [value]
    depth = 0
    while level:
        below: list[Any] = []
        push = below.append
        for node in level:
            if not node:
                continue
            if depth >= max_depth:
                return False
            if type(node) is dict:
                try:
                    if not "".join(node).isascii():
                        return False
                except TypeError:  # a key that is not a str
                    return False
                items: Any = node.values()
            else:
                items = node
            for item in items:
                kind = type(item)
                if kind in _NESTED:
                    push(item)
                elif kind not in _SCALARS:
                    return False
            if len(below) > _MAX_LEVEL:
                return False
        level = below
        depth += 1
    return True


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
    if _plain(value, max_depth):
        try:
            return orjson.dumps(value, option=_ORJSON)
        except orjson.JSONEncodeError:
            pass  # an integer out of range or a lone surrogate: the reference path names the error
    return _encode_reference(value, max_depth)


def encode_decoded(values: Sequence[Any]) -> list[bytes]:
    """The canonical bytes of each of ``values``, parts of a value ``decode`` returned, without the subset checks.

    Only for what ``decode`` produced (it has checked the subset); a caller
    that can, compares the parts against the decoded bytes.
    """
    return [orjson.dumps(value, option=_ORJSON) for value in values]


def _encode_reference(value: Any, max_depth: int) -> bytes:
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
        value = orjson.loads(data) if isinstance(data, bytes | bytearray) else _NOT_BYTES
        if value is not _NOT_BYTES and _plain(value, max_depth) and orjson.dumps(value, option=_ORJSON) == data:
            return value
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    return _decode_reference(data, max_depth)


def _decode_reference(data: bytes, max_depth: int) -> Any:
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
