"""Pre-fill a gateway SQLite store with N stored sheets, fast, with rows shaped like real ones.

The schema is the gateway's own (``SqliteStore.open`` runs its migrations).
Rows are made from a pool of real envelopes: each stored batch carries a
real envelope's bytes, its 10 real canonical sheet bodies and a real
receipt's size, under its own (device, seq), its own batch hash and its own
sheet ids, so table and index sizes and shapes match what ingest writes.
Devices are named ``PF-nnnnn`` (a fleet of 30,000) and interleaved the way an
end-of-day sync storm interleaves them, so the (device_id, seq) and
batch_hash indexes grow as they do in service.

Only the pre-fill runs with ``synchronous=OFF`` and ``journal_mode=OFF`` in
large ``executemany`` transactions; the file is put back in WAL mode at the
end and the gateway reopens it with its own durable settings.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from gateway.sheets import SheetValidator
from gateway.store_sqlite import SqliteStore
from wire import decode_envelope, open_envelope, verify_envelope

from .fleet import BenchFleet
from .workload import WorkItem

__all__ = ["PREFILL_DEVICES", "prefill", "sheet_pool"]

PREFILL_DEVICES = 30_000
_BATCHES_PER_TX = 5_000


def sheet_pool(items: list[WorkItem], size: int) -> list[tuple[bytes, Any]]:
    fleet = BenchFleet(tablets=0)
    validator = SheetValidator()
    pool = []
    for item in items[:size]:
        envelope = decode_envelope(item.envelope)
        verified = verify_envelope(envelope, bytes(BenchFleet.tablet_key(item.device_index).verify_key))
        sorted_sheets = validator.sort(open_envelope(verified, fleet.data_public, bytes(fleet.data)))
        pool.append((item.envelope, sorted_sheets.accepted))
    return pool


def _create_schema(db: Path) -> None:
    async def run() -> None:
        store = SqliteStore(db)
        await store.open()
        await store.close()

    asyncio.run(run())


def prefill(
    db: Path, sheets: int, items: list[WorkItem], *, first: int = 0, pool_size: int = 200, log: Any = print
) -> dict[str, Any]:
    """Add ``sheets`` stored sheets (batches of 10) to the store at ``db``, pre-fill batches ``first ..``."""
    started = time.perf_counter()
    _create_schema(db)
    pool = sheet_pool(items, pool_size)
    per_batch = len(pool[0][1])
    batches = sheets // per_batch
    receipt = bytes(310)
    key_id = bytes(16)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("PRAGMA foreign_keys=OFF")
    next_id = (conn.execute("SELECT max(id) FROM batches").fetchone()[0] or 0) + 1
    done = first
    batches += first
    base_ms = time.time_ns() // 1_000_000 - 86_400_000
    while done < batches:
        n = min(_BATCHES_PER_TX, batches - done)
        batch_rows = []
        sheet_rows = []
        for k in range(done, done + n):
            envelope, accepted = pool[k % len(pool)]
            device, seq = f"PF-{k % PREFILL_DEVICES:05d}", k // PREFILL_DEVICES + 1
            batch_id = next_id + (k - first)
            batch_rows.append((
                batch_id, device, seq, hashlib.sha256(b"prefill/%d" % k).digest(), envelope, "census-sheet/1",
                base_ms + k, (base_ms + k) // 1000, base_ms + k, "online", key_id, per_batch, 0, receipt,
            ))
            sheet_rows.extend(
                (batch_id, s.index, str(uuid.UUID(int=(k << 8) | s.index, version=4)), s.institution_code,
                 s.respondent_list_entry, s.body_json)
                for s in accepted
            )
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch_rows)
        conn.executemany("INSERT INTO sheets VALUES (?, ?, ?, ?, ?, ?)", sheet_rows)
        conn.execute("COMMIT")
        done += n
        if done % 100_000 < _BATCHES_PER_TX:
            log(f"  prefill: {done * per_batch:,} sheets stored, {time.perf_counter() - started:.0f} s")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    fd = os.open(db, os.O_RDONLY)
    try:
        os.fsync(fd)  # write the pre-fill out now, not while the next measurement runs
    finally:
        os.close(fd)
    return {
        "sheets": (batches - first) * per_batch,
        "batches": batches - first,
        "seconds": time.perf_counter() - started,
        "db_bytes": db.stat().st_size,
    }
