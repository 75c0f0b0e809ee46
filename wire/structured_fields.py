"""RFC 8941 structured fields: the strict subset RFC 9421 needs (Dictionary, Inner List, no Decimal).

Parsing is strict: a duplicate key or parameter, non-canonical base64 in a Byte
Sequence, or any syntax error raises ``SignatureInputError`` naming the field
(``what``) and the offset.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from .errors import SignatureInputError

__all__ = [
    "BareItem",
    "InnerList",
    "Item",
    "Params",
    "Token",
    "parse_dictionary",
    "serialize_dictionary",
    "serialize_bare_item",
    "serialize_inner_list",
]


@dataclass(frozen=True, slots=True)
class Token:
    value: str


BareItem = int | str | bytes | bool | Token
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = ()


# Every pattern is linear: no nested quantifiers, alternatives differ in their first character.
_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*")
_INTEGER = re.compile(r"-?[0-9]{1,15}")
_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')
_STRING_CHARS = re.compile(r"[ -~]*")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")
_ESCAPE = re.compile(r"\\(.)")


def _fail(what: str, reason: str, pos: int) -> NoReturn:
    raise SignatureInputError(f"{what}: {reason}", at=pos)


def parse_dictionary(text: str, *, what: str) -> dict[str, Item | InnerList]:
    """Strict RFC 8941 Dictionary; a repeated key is refused rather than overwritten."""
    if not text.isascii():
        _fail(what, "not US-ASCII", 0)
    s = text.strip(" \t")
    members: dict[str, Item | InnerList] = {}
    pos, end = 0, len(s)
    while pos < end:
        key, pos = _parse_key(s, pos, what)
        if key in members:
            _fail(what, f"duplicate key {key!r}", pos)
        if pos < end and s[pos] == "=":
            members[key], pos = _parse_member(s, pos + 1, what)
        else:
            params, pos = _parse_params(s, pos, what)
            members[key] = Item(True, params)
        while pos < end and s[pos] in " \t":
            pos += 1
        if pos == end:
            break
        if s[pos] != ",":
            _fail(what, "expected ','", pos)
        pos += 1
        while pos < end and s[pos] in " \t":
            pos += 1
        if pos == end:
            _fail(what, "trailing ','", pos)
    return members


def _parse_key(s: str, pos: int, what: str) -> tuple[str, int]:
    m = _KEY.match(s, pos)
    if m is None:
        _fail(what, "expected a key", pos)
    return m.group(), m.end()


def _parse_member(s: str, pos: int, what: str) -> tuple[Item | InnerList, int]:
    if pos < len(s) and s[pos] == "(":
        return _parse_inner_list(s, pos + 1, what)
    value, pos = _parse_bare_item(s, pos, what)
    params, pos = _parse_params(s, pos, what)
    return Item(value, params), pos


def _parse_inner_list(s: str, pos: int, what: str) -> tuple[InnerList, int]:
    items: list[Item] = []
    end = len(s)
    while True:
        while pos < end and s[pos] == " ":
            pos += 1
        if pos == end:
            _fail(what, "unterminated inner list", pos)
        if s[pos] == ")":
            params, pos = _parse_params(s, pos + 1, what)
            return InnerList(tuple(items), params), pos
        value, pos = _parse_bare_item(s, pos, what)
        params, pos = _parse_params(s, pos, what)
        items.append(Item(value, params))
        if pos < end and s[pos] not in " )":
            _fail(what, "expected ' ' or ')' in inner list", pos)


def _parse_params(s: str, pos: int, what: str) -> tuple[Params, int]:
    params: list[tuple[str, BareItem]] = []
    end = len(s)
    while pos < end and s[pos] == ";":
        pos += 1
        while pos < end and s[pos] == " ":
            pos += 1
        name, pos = _parse_key(s, pos, what)
        if any(name == seen for seen, _ in params):
            _fail(what, f"duplicate parameter {name!r}", pos)
        value: BareItem = True
        if pos < end and s[pos] == "=":
            value, pos = _parse_bare_item(s, pos + 1, what)
        params.append((name, value))
    return tuple(params), pos


def _parse_bare_item(s: str, pos: int, what: str) -> tuple[BareItem, int]:
    c = s[pos] if pos < len(s) else ""
    if c == "-" or c.isdigit():
        m = _INTEGER.match(s, pos)
        if m is None or (m.end() < len(s) and (s[m.end()].isdigit() or s[m.end()] == ".")):
            _fail(what, "integers have at most 15 digits; decimals are not used", pos)
        return int(m.group()), m.end()
    if c == '"':
        m = _STRING.match(s, pos)
        if m is None:
            _fail(what, "bad string", pos)
        text = m.group(1)
        return (_ESCAPE.sub(r"\1", text) if "\\" in text else text), m.end()
    if c == ":":
        m = _BYTES.match(s, pos)
        if m is None:
            _fail(what, "bad byte sequence", pos)
        try:
            data = base64.b64decode(m.group(1), validate=True)
        except (binascii.Error, ValueError):
            _fail(what, "bad base64", pos)
        if base64.b64encode(data).decode("ascii") != m.group(1):
            _fail(what, "base64 is not canonical (padded)", pos)
        return data, m.end()
    if c == "?":
        if s[pos + 1 : pos + 2] not in ("0", "1"):
            _fail(what, "bad boolean", pos)
        return s[pos + 1] == "1", pos + 2
    if c.isalpha() or c == "*":
        m = _TOKEN.match(s, pos)
        if m is None:  # pragma: no cover - the first character always matches
            _fail(what, "bad token", pos)
        return Token(m.group()), m.end()
    _fail(what, "expected an item", pos)


def serialize_bare_item(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) >= 10**15:
            raise SignatureInputError("integer out of structured-field range")
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, Token):
        if not _TOKEN.fullmatch(value.value):
            raise SignatureInputError("not a structured-field token")
        return value.value
    if not _STRING_CHARS.fullmatch(value):
        raise SignatureInputError("strings must be printable US-ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ser_params(params: Params) -> str:
    out = []
    for name, value in params:
        if not _KEY.fullmatch(name):
            raise SignatureInputError("not a structured-field key")
        out.append(f";{name}" if value is True else f";{name}={serialize_bare_item(value)}")
    return "".join(out)


def _ser_item(item: Item) -> str:
    return serialize_bare_item(item.value) + _ser_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    return "(" + " ".join(_ser_item(i) for i in inner.items) + ")" + _ser_params(inner.params)


def serialize_dictionary(members: Mapping[str, Item | InnerList]) -> str:
    out = []
    for key, member in members.items():
        if not _KEY.fullmatch(key):
            raise SignatureInputError("not a structured-field key")
        if isinstance(member, InnerList):
            out.append(f"{key}={serialize_inner_list(member)}")
        elif member.value is True:
            out.append(key + _ser_params(member.params))
        else:
            out.append(f"{key}={_ser_item(member)}")
    return ", ".join(out)
