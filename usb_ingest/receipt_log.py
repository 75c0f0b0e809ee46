"""``<state_dir>/receipts.jsonl``: one JSON line per delivered batch, and its safe compaction.

A line holds device id, seq, batch hash, the gateway's receive time, the road
and (while it is young) the receipt itself in base64. The log is the durable
index of what was delivered: a re-plugged tablet's delivered batches are
recognised from it without reading them, and ``status`` counts per tablet
from it.

Appends are ``O_APPEND`` + fsync; a torn last line (a crash during an append)
is cut off when the log is opened for writing, since that receipt was never
acted on (the entry is still spooled and is sent again).

**Compaction** rewrites the log without what no reader needs: a second line
for the same (device, seq, hash) (a batch receipted twice), and the base64
receipt of lines older than ``keep_receipts_ms`` (the gateway keeps every
receipt; the station needs only the index). A line it cannot parse is kept
as it is. The new log is written to ``receipts.jsonl.tmp-<hex>``, fsynced,
renamed over the log and the directory fsynced: a crash at any point leaves
either the old log (and a temp file, removed on the next open) or the new
one, and both index the same deliveries.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from runtime.private_files import open_private

__all__ = ["CompactResult", "ReceiptLog"]

log = structlog.get_logger("usb_ingest.receipts")

_TMP = ".tmp-"
# compact on open only when it frees at least this much and a quarter of the file
_AUTO_COMPACT_MIN_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CompactResult:
    lines_before: int
    lines_after: int
    bytes_before: int
    bytes_after: int
    receipts_dropped: int
    duplicates_dropped: int


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a short write (disk full) continues; the next write raises ENOSPC
        view = view[os.write(fd, view) :]


class ReceiptLog:
    """The log and its in-memory index ``(device id, seq) -> batch hash``, loaded once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index: dict[tuple[str, int], bytes] = {}

    @classmethod
    def load(cls, path: Path, *, repair: bool = True) -> ReceiptLog:
        """Read the log. ``repair`` (the owner of the state directory, under its lock) also cuts a torn last
        line and removes temp files of an interrupted compaction; without it the files are only read."""
        book = cls(path)
        if repair:
            for p in path.parent.glob(f"{path.name}{_TMP}*"):
                p.unlink()
                log.info("usb.receipts.compaction_leftover_removed", file=p.name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return book
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            if repair:
                with path.open("r+b") as fh:
                    fh.truncate(keep)
                    os.fsync(fh.fileno())
                log.warning("usb.receipts.torn_line_dropped", bytes=len(data) - keep)
            data = data[:keep]
        for number, line in enumerate(data.splitlines(), 1):
            row = _parse(line)
            if row is None:
                log.error("usb.receipts.bad_line", line=number)
                continue
            key = (str(row["device_id"]), int(row["seq"]))
            book.index[key] = bytes.fromhex(str(row["batch_hash"]))
        return book

    def append(self, row: dict[str, Any]) -> None:
        """Durably append one line (the caller serialises appends). On failure the line is taken back."""
        line = json.dumps(row, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"
        fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            end = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError:
                # the line may be partial or not durable: take it back; the batch stays pending and is resent
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)
                    os.fsync(fd)
                raise
        finally:
            os.close(fd)
        key = (str(row["device_id"]), int(row["seq"]))
        self.index[key] = bytes.fromhex(str(row["batch_hash"]))

    def per_device(self) -> Counter[str]:
        """Delivered batches per tablet."""
        return Counter(device for device, _seq in self.index)

    def _compacted(self, data: bytes, cutoff_ms: int) -> tuple[bytes, int, int, int]:
        out: list[bytes] = []
        seen: set[tuple[str, int, str]] = set()
        lines = dropped_receipts = duplicates = 0
        for line in data.splitlines():
            lines += 1
            row = _parse(line)
            if row is None:
                out.append(line)  # never destroy what cannot be understood
                continue
            key = (str(row["device_id"]), int(row["seq"]), str(row["batch_hash"]))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if "receipt" in row and int(row.get("received_at_ms", 0)) < cutoff_ms:
                del row["receipt"]
                dropped_receipts += 1
                out.append(json.dumps(row, sort_keys=True, separators=(",", ":")).encode("ascii"))
                continue
            out.append(line)
        body = b"".join(x + b"\n" for x in out)
        return body, lines, dropped_receipts, duplicates

    def compact(self, *, now_ms: int, keep_receipts_ms: int, force: bool = True) -> CompactResult | None:
        """Rewrite the log (see the module docstring). Without ``force`` only when it frees at least 1 MiB and a
        quarter of the file; returns None when nothing was rewritten."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        keep = data.rfind(b"\n") + 1  # a torn tail is cut by load(); never copied into the new log
        body, lines, receipts, duplicates = self._compacted(data[:keep], now_ms - keep_receipts_ms)
        freed = len(data) - len(body)
        if not force and (freed < _AUTO_COMPACT_MIN_BYTES or freed * 4 < len(data)):
            return None
        if body == data:
            return None
        tmp = self.path.with_name(f"{self.path.name}{_TMP}{secrets.token_hex(8)}")
        fd = open_private(tmp, os.O_WRONLY | os.O_EXCL)
        try:
            _write_all(fd, body)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.rename(tmp, self.path)
        fsync_dir(self.path.parent)
        result = CompactResult(lines, body.count(b"\n"), len(data), len(body), receipts, duplicates)
        log.info("usb.receipts.compacted", lines_before=lines, lines_after=result.lines_after,
                 bytes_before=len(data), bytes_after=len(body), receipts_dropped=receipts,
                 duplicates_dropped=duplicates)
        return result


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
        if not isinstance(row, dict):
            return None
        str(row["device_id"])
        int(row["seq"])
        bytes.fromhex(str(row["batch_hash"]))
        int(row.get("received_at_ms", 0))
    except (ValueError, KeyError, TypeError):
        return None
    return row
