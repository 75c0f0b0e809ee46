"""A bounds-checked reader over bytes; every short read is ``TruncatedError``."""

from __future__ import annotations

import struct

from .errors import TrailingBytesError, TruncatedError

__all__ = ["Reader"]


class Reader:
    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    @property
    def pos(self) -> int:
        return self._pos

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise TruncatedError(f"{self._what} truncated", offset=self._pos, wanted=n)
        out = bytes(self._data[self._pos : end])
        self._pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def end(self) -> None:
        if self._pos != len(self._data):
            raise TrailingBytesError(
                f"{self._what} has trailing bytes", extra=len(self._data) - self._pos
            )
