"""What the spool holds, per tablet, computed from the files on disk (never from a process's counters).

``scan_spool(spool_dir, receipt_log)`` only reads: the directory listings of
``batches/``, ``custody/`` and ``rejected/`` (names carry device and seq, the
size and mtime come from ``stat``; mtime is when the entry was spooled) and
the receipt log (the durable index of deliveries). It takes no lock and
changes nothing, so ``sanaq-usb-ingest status`` can run it next to the
service, and a restarted service shows the same numbers as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .receipt_log import ReceiptLog

__all__ = ["SpoolSnapshot", "TabletSpool", "scan_spool", "split_name", "summarise"]

TMP_PREFIX = ".tmp-"
BATCH_SUFFIX = "sqb"
CUSTODY_SUFFIX = "sqc"
REASON_SUFFIX = ".reason.json"


@dataclass(frozen=True, slots=True)
class TabletSpool:
    """One tablet's entries at this station. ``oldest_pending_ms``: when the oldest pending batch was spooled."""

    device_id: str
    pending: int = 0
    pending_bytes: int = 0
    oldest_pending_ms: int | None = None
    forwarded: int = 0
    rejected: int = 0
    rejected_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SpoolSnapshot:
    tablets: tuple[TabletSpool, ...]
    custody_pending: int
    custody_rejected: int = 0

    @property
    def pending(self) -> int:
        return sum(t.pending for t in self.tablets)

    @property
    def pending_bytes(self) -> int:
        return sum(t.pending_bytes for t in self.tablets)

    @property
    def rejected(self) -> int:
        """Rejected entries of both kinds (batches per tablet, and custody records)."""
        return sum(t.rejected for t in self.tablets) + self.custody_rejected

    @property
    def forwarded(self) -> int:
        return sum(t.forwarded for t in self.tablets)


def split_name(name: str, suffix: str) -> tuple[str, int, bytes] | None:
    """(device id, number, hash) from ``<device>.<16 digits>.<64 hex>.<suffix>``, else None."""
    parts = name.rsplit(".", 3)
    if len(parts) != 4 or parts[3] != suffix or name.startswith("."):
        return None
    device_id, number, digest = parts[0], parts[1], parts[2]
    if len(number) != 16 or not number.isdigit() or len(digest) != 64:
        return None
    try:
        return device_id, int(number), bytes.fromhex(digest)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _File:
    device_id: str
    size: int
    mtime_ms: int


def _list(directory: Path, suffix: str) -> list[_File]:
    files = []
    try:
        names = list(directory.iterdir())
    except FileNotFoundError:
        return []
    for p in names:
        parts = split_name(p.name, suffix)
        if parts is None:
            continue
        try:
            st = p.stat()
        except FileNotFoundError:  # forwarded or moved meanwhile
            continue
        files.append(_File(parts[0], st.st_size, st.st_mtime_ns // 1_000_000))
    return files


def summarise(pending: Iterable[_File], rejected: Iterable[_File], forwarded: Mapping[str, int]) -> list[TabletSpool]:
    rows: dict[str, dict[str, int | None]] = {}

    def row(device: str) -> dict[str, int | None]:
        return rows.setdefault(device, {"pending": 0, "pending_bytes": 0, "oldest_pending_ms": None,
                                        "forwarded": 0, "rejected": 0, "rejected_bytes": 0})

    for f in pending:
        r = row(f.device_id)
        r["pending"] = int(r["pending"] or 0) + 1
        r["pending_bytes"] = int(r["pending_bytes"] or 0) + f.size
        oldest = r["oldest_pending_ms"]
        r["oldest_pending_ms"] = f.mtime_ms if oldest is None else min(oldest, f.mtime_ms)
    for f in rejected:
        r = row(f.device_id)
        r["rejected"] = int(r["rejected"] or 0) + 1
        r["rejected_bytes"] = int(r["rejected_bytes"] or 0) + f.size
    for device, n in forwarded.items():
        row(device)["forwarded"] = n
    return [TabletSpool(device, int(r["pending"] or 0), int(r["pending_bytes"] or 0), r["oldest_pending_ms"],
                        int(r["forwarded"] or 0), int(r["rejected"] or 0), int(r["rejected_bytes"] or 0))
            for device, r in sorted(rows.items())]


def snapshot(spool_dir: Path, forwarded: Mapping[str, int]) -> SpoolSnapshot:
    """The spool's contents now, with deliveries per tablet from ``forwarded`` (the receipt log's index)."""
    rejected_dir = spool_dir / "rejected"
    rejected = _list(rejected_dir, BATCH_SUFFIX)
    tablets = summarise(_list(spool_dir / "batches", BATCH_SUFFIX), rejected, forwarded)
    custody = len(_list(spool_dir / "custody", CUSTODY_SUFFIX))
    return SpoolSnapshot(tuple(tablets), custody, len(_list(rejected_dir, CUSTODY_SUFFIX)))


def scan_spool(spool_dir: Path, receipt_log: Path) -> SpoolSnapshot:
    """Read-only: safe next to the running service. ``OSError`` if the spool cannot be read (permissions)."""
    if not spool_dir.is_dir():
        raise FileNotFoundError(str(spool_dir))
    (spool_dir / "batches").stat()  # PermissionError here, not an empty view, for a reader outside the group
    list((spool_dir / "batches").iterdir())
    book = ReceiptLog.load(receipt_log, repair=False)
    return snapshot(spool_dir, Counter(book.per_device()))
