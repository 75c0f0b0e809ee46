"""Strict readers for members of decoded JSON objects; every miss is ``DecodeError``."""

from __future__ import annotations

from typing import Any

from .canonical import MAX_SAFE_INT
from .errors import DecodeError
from .keyids import parse_hex

__all__ = ["exact_members", "get_hex", "get_int", "get_list", "get_obj", "get_opt_int", "get_str"]


def exact_members(obj: Any, members: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DecodeError(f"{what} must be a JSON object")
    if set(obj) != members:
        missing = sorted(members - set(obj))
        extra = sorted(set(obj) - members)
        raise DecodeError(f"{what} has the wrong members", missing=missing, extra=extra)
    return obj


def get_str(obj: dict[str, Any], name: str, *, max_len: int = 256, min_len: int = 0) -> str:
    value = obj[name]
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise DecodeError(f"member {name!r} must be a string of {min_len}..{max_len} characters")
    return value


def get_int(obj: dict[str, Any], name: str, *, minimum: int = 0, maximum: int = MAX_SAFE_INT) -> int:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise DecodeError(f"member {name!r} must be an integer in {minimum}..{maximum}")
    return value


def get_opt_int(obj: dict[str, Any], name: str, *, minimum: int = 0) -> int | None:
    if obj[name] is None:
        return None
    return get_int(obj, name, minimum=minimum)


def get_hex(obj: dict[str, Any], name: str, size: int) -> bytes:
    return parse_hex(obj[name], size, f"member {name!r}")


def get_list(obj: dict[str, Any], name: str, *, max_items: int) -> list[Any]:
    value = obj[name]
    if not isinstance(value, list) or len(value) > max_items:
        raise DecodeError(f"member {name!r} must be a list of at most {max_items} items")
    return value


def get_obj(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj[name]
    if not isinstance(value, dict):
        raise DecodeError(f"member {name!r} must be an object")
    return value
