"""SQLite census store (the embedded default): WAL, synchronous=FULL, group commit.

One writer thread owns the only write connection. Callers hand it small jobs;
it takes every job waiting (up to ``max_group``, waiting at most
``max_wait_ms`` for company), runs each inside its own SAVEPOINT within one
transaction, commits once (one WAL fsync for the whole group), and only then
resolves the callers' futures. A job that fails on its own rule (replay,
conflict) is rolled back to its savepoint without harming the others; a
failure of the engine (disk full, I/O error) or of COMMIT fails every job of
the group, so nothing is acknowledged that was not written.

Reads run on a small thread pool, each thread with its own connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from runtime.private_files import prepare_private_sqlite
from wire.errors import RollbackError

from ._schema_sqlite import MIGRATIONS
from .store import (
    BatchRecord,
    Conflict,
    CustodyItem,
    DeviceSeqs,
    Duplicate,
    IngestItem,
    IngestOutcome,
    NonceUse,
    NotDurableError,
    PersonRecord,
    ReplayError,
    SecurityEvent,
    Stored,
    StoreError,
    StoreUnavailable,
)

__all__ = ["NotDurableError", "SqliteStore"]

T = TypeVar("T")
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_STOP = object()


class _RuleError(Exception):
    """Raised inside a job to roll back its savepoint and hand ``error`` to its caller."""

    def __init__(self, error: Exception) -> None:
        self.error = error


# Page cache of the write connection: the (device_id, seq) index takes inserts at random
# positions (tablets interleave), so its pages must stay cached as the store grows.
_WRITER_CACHE_KIB = 256 * 1024
_READER_CACHE_KIB = 64 * 1024

log = structlog.get_logger("sanaq.gateway")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def check_durable(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    if str(mode).lower() != "wal" or int(sync) < 2:
        raise NotDurableError(f"SQLite store not durable: journal_mode={mode} synchronous={sync}")


class SqliteStore:
    def __init__(self, path: Path, *, max_group: int = 256, max_wait_ms: float = 2.0, durable: bool = True) -> None:
        self._path = path
        self._max_group = max_group
        self._max_wait_s = max_wait_ms / 1000
        self._durable = durable
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self.group_sizes: list[int] = []
        self.last_commit_s = 0.0

    # ---- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()

    def _open_sync(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            prepare_private_sqlite(self._path)  # census.db, -wal, -shm: 0600 whatever the umask
            conn = _connect(self._path)
            if self._durable:
                check_durable(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, step in MIGRATIONS:
                if version in done:
                    continue
                started = time.monotonic()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if callable(step):
                        step(conn)
                    else:
                        for stmt in step.split(";"):
                            if stmt.strip():
                                conn.execute(stmt)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, int(time.time() * 1000)))
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                log.info("store.sqlite.migrated", version=version, seconds=round(time.monotonic() - started, 3))
        except (sqlite3.Error, OSError) as e:
            if conn is not None:
                conn.close()
            raise StoreUnavailable(f"cannot open SQLite store: {e}") from e
        self._conn = conn

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
            self._conn.close()
            self._readers.shutdown(wait=True)
            with self._reader_lock:
                for conn in self._reader_conns:
                    conn.close()
                self._reader_conns.clear()

    # ---- the writer ------------------------------------------------------------
    def _take_group(self, first: Any) -> list[Any]:
        group = [first]
        if first is _STOP:
            return group
        deadline = time.monotonic() + self._max_wait_s
        while len(group) < self._max_group:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._max_wait_s == 0:
                    break
                try:
                    item = self._jobs.get(timeout=remaining)
                except queue.Empty:
                    break
            group.append(item)
            if item is _STOP:
                break
        return group

    def _write_loop(self) -> None:
        while True:
            group = self._take_group(self._jobs.get())
            stop = any(item is _STOP for item in group)
            jobs = [item for item in group if item is not _STOP]
            if jobs:
                self._run_group(jobs)
            if stop:
                return

    def _run_group(self, jobs: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = []
        conn = self._conn
        started = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for n, (fn, _, _) in enumerate(jobs):
                conn.execute(f"SAVEPOINT j{n}")
                try:
                    results.append((True, fn(conn)))
                    conn.execute(f"RELEASE j{n}")
                except _RuleError as e:
                    conn.execute(f"ROLLBACK TO j{n}")
                    conn.execute(f"RELEASE j{n}")
                    results.append((False, e.error))
                except sqlite3.Error:
                    raise
                except Exception as e:  # a bug in one job must not kill the writer or its group
                    conn.execute(f"ROLLBACK TO j{n}")
                    conn.execute(f"RELEASE j{n}")
                    results.append((False, StoreError(f"store job failed: {type(e).__name__}")))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"store write failed: {e}")
            results = [(False, failure)] * len(jobs)
        self.group_sizes.append(len(jobs))
        if len(self.group_sizes) > 4096:
            del self.group_sizes[:2048]
        self.last_commit_s = time.monotonic() - started
        for (_, loop, fut), (ok, value) in zip(jobs, results, strict=True):
            loop.call_soon_threadsafe(_resolve, fut, ok, value)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, fut))
        return await fut

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()

        def run() -> T:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
                conn.execute(f"PRAGMA cache_size=-{_READER_CACHE_KIB}")  # idempotency lookups per request
                self._local.conn = conn
                with self._reader_lock:
                    self._reader_conns.append(conn)
            try:
                return fn(conn)
            except sqlite3.Error as e:
                raise StoreUnavailable(f"store read failed: {e}") from e

        return await loop.run_in_executor(self._readers, run)

    @property
    def queue_depth(self) -> int:
        return self._jobs.qsize()

    # ---- operations --------------------------------------------------------------
    async def ingest(self, item: IngestItem) -> IngestOutcome:
        def job(conn: sqlite3.Connection) -> IngestOutcome:
            _insert_nonce(conn, item.nonce)
            row = conn.execute(
                "SELECT batch_hash, receipt FROM batches WHERE device_id = ? AND seq = ?", (item.device_id, item.seq)
            ).fetchone()
            if row is not None:
                return Duplicate(bytes(row[1])) if bytes(row[0]) == item.batch_hash else Conflict(bytes(row[0]))
            cur = conn.execute(
                "INSERT INTO batches (device_id, seq, batch_hash, envelope, schema, sealed_at_ms, request_created_s,"
                " received_at_ms, road, signer_key_id, sheets_accepted, sheets_quarantined, receipt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item.device_id,
                    item.seq,
                    item.batch_hash,
                    item.envelope,
                    item.schema,
                    item.sealed_at_ms,
                    item.request_created_s,
                    item.received_at_ms,
                    item.road,
                    item.signer_key_id,
                    len(item.sheets),
                    len(item.quarantined),
                    item.receipt,
                ),
            )
            batch_id = cur.lastrowid
            conn.executemany(
                "INSERT INTO sheets VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (batch_id, s.index, s.sheet_id, s.institution_code, s.respondent_list_entry, s.body_json)
                    for s in item.sheets
                ],
            )
            conn.executemany(
                "INSERT INTO quarantine VALUES (?, ?, ?, ?)",
                [(batch_id, q.index, q.reason, q.body_json) for q in item.quarantined],
            )
            _count_persons(conn, batch_id, item)
            return Stored(item.receipt)

        return await self._write(job)

    async def use_nonce(self, nonce: NonceUse) -> None:
        await self._write(lambda conn: _insert_nonce(conn, nonce))

    async def find_batch(self, device_id: str, seq: int) -> BatchRecord | None:
        def run(conn: sqlite3.Connection) -> BatchRecord | None:
            row = conn.execute(
                "SELECT batch_hash, receipt, received_at_ms, road FROM batches WHERE device_id = ? AND seq = ?",
                (device_id, seq),
            ).fetchone()
            if row is None:
                return None
            return BatchRecord(device_id, seq, bytes(row[0]), bytes(row[1]), row[2], row[3])

        return await self._read(run)

    async def device_seqs(self, device_id: str) -> DeviceSeqs:
        def run(conn: sqlite3.Connection) -> DeviceSeqs:
            seqs = tuple(
                r[0] for r in conn.execute("SELECT seq FROM batches WHERE device_id = ? ORDER BY seq", (device_id,))
            )
            last = conn.execute("SELECT max(received_at_ms) FROM batches WHERE device_id = ?", (device_id,)).fetchone()[
                0
            ]
            return DeviceSeqs(device_id, seqs, last)

        return await self._read(run)

    async def record_security_event(self, event: SecurityEvent) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO security_events (at_ms, kind, device_id, seq, key_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.at_ms,
                    event.kind,
                    event.device_id,
                    event.seq,
                    event.key_id,
                    json.dumps(event.detail, sort_keys=True),
                ),
            )

        await self._write(job)

    async def current_snapshot(self) -> bytes | None:
        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT snapshot FROM registry WHERE id = 1").fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(run)

    async def save_snapshot(self, version: int, snapshot: bytes) -> None:
        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT version, snapshot FROM registry WHERE id = 1").fetchone()
            if row is not None and row[0] > version:
                raise _RuleError(RollbackError("snapshot older than the one held", version=version, held=row[0]))
            if row is not None and row[0] == version and bytes(row[1]) != snapshot:
                raise _RuleError(RollbackError("another snapshot with the version held", version=version))
            conn.execute(
                "INSERT INTO registry (id, version, snapshot) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version, snapshot = excluded.snapshot",
                (version, snapshot),
            )

        await self._write(job)

    async def snapshot_version(self) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT version FROM registry WHERE id = 1").fetchone()
            return None if row is None else int(row[0])

        return await self._read(run)

    async def watch_registry(self, changed: Callable[[], None]) -> None:
        """Nothing to watch: one gateway process owns a SQLite file, and its own PUTs are in force at once."""
        del changed

    async def add_custody(self, item: CustodyItem) -> None:
        def job(conn: sqlite3.Connection) -> None:
            _insert_nonce(conn, item.nonce)
            conn.execute(
                "INSERT INTO custody (station_id, device_id, pulled_at_ms, received_at_ms, batch_count,"
                " record, record_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (record_hash) DO NOTHING",
                (
                    item.station_id,
                    item.device_id,
                    item.pulled_at_ms,
                    item.received_at_ms,
                    item.batch_count,
                    item.record,
                    hashlib.sha256(item.record).digest(),
                ),
            )

        await self._write(job)

    async def purge_nonces(self, now_ms: int) -> int:
        return await self._write(
            lambda conn: conn.execute("DELETE FROM nonces WHERE expires_at_ms < ?", (now_ms,)).rowcount
        )

    async def counts(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            out = {}
            for table in _COUNTED:
                out[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
            return out

        return await self._read(run)

    async def institution_persons(self, institution_code: str) -> list[PersonRecord]:
        def run(conn: sqlite3.Connection) -> list[PersonRecord]:
            rows = conn.execute(_INSTITUTION_PERSONS, (institution_code,)).fetchall()
            return [PersonRecord(*r) for r in rows]

        return await self._read(run)


_COUNTED = ("batches", "sheets", "quarantine", "security_events", "custody", "nonces", "persons", "review_cases")
_INSTITUTION_PERSONS = (
    "SELECT p.entry_id, p.road, b.device_id, b.received_at_ms, p.source,"
    " (SELECT count(*) FROM review_cases r WHERE r.institution_code = p.institution_code"
    " AND r.entry_id = p.entry_id AND r.kind = 'same-entry')"
    " FROM persons p JOIN batches b ON b.id = p.batch_id WHERE p.institution_code = ? ORDER BY p.entry_id"
)


def _count_persons(conn: sqlite3.Connection, batch_id: int | None, item: IngestItem) -> None:
    """Count each institution sheet's entry once; a later sheet for a counted entry opens a review case."""
    for s in item.sheets:
        code, entry = s.institution_code, s.respondent_list_entry
        if code is None or entry is None:
            continue
        cur = conn.execute(
            "INSERT INTO persons (institution_code, entry_id, batch_id, idx, road, source, region, person_key,"
            " counted_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (institution_code, entry_id) DO NOTHING",
            (
                code,
                entry,
                batch_id,
                s.index,
                item.road,
                s.source or "",
                s.region or "",
                s.person_key,
                item.received_at_ms,
            ),
        )
        if cur.rowcount == 0:
            held = conn.execute(
                "SELECT batch_id, idx FROM persons WHERE institution_code = ? AND entry_id = ?", (code, entry)
            ).fetchone()
            _open_case(
                conn,
                kind="same-entry",
                code=code,
                entry=entry,
                first=(held[0], held[1]),
                second=(batch_id, s.index),
                at_ms=item.received_at_ms,
            )
        if s.person_key is None:
            continue
        cur = conn.execute(
            "INSERT INTO person_keys (institution_code, person_key, entry_id, batch_id, idx) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (institution_code, person_key) DO NOTHING",
            (code, s.person_key, entry, batch_id, s.index),
        )
        if cur.rowcount == 0:
            held = conn.execute(
                "SELECT entry_id, batch_id, idx FROM person_keys WHERE institution_code = ? AND person_key = ?",
                (code, s.person_key),
            ).fetchone()
            if held[0] != entry:
                _open_case(
                    conn,
                    kind="possible-duplicate",
                    code=code,
                    entry=held[0],
                    first=(held[1], held[2]),
                    second=(batch_id, s.index),
                    at_ms=item.received_at_ms,
                )


def _open_case(
    conn: sqlite3.Connection,
    *,
    kind: str,
    code: str,
    entry: str,
    first: tuple[int, int],
    second: tuple[int | None, int],
    at_ms: int,
) -> None:
    conn.execute(
        "INSERT INTO review_cases (kind, institution_code, entry_id, first_batch_id, first_idx, second_batch_id,"
        " second_idx, opened_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (kind, code, entry, first[0], first[1], second[0], second[1], at_ms),
    )


def _insert_nonce(conn: sqlite3.Connection, nonce: NonceUse) -> None:
    try:
        conn.execute(
            "INSERT INTO nonces (key_id, nonce, expires_at_ms) VALUES (?, ?, ?)",
            (nonce.key_id, nonce.nonce, nonce.expires_at_ms),
        )
    except sqlite3.IntegrityError as e:
        raise _RuleError(ReplayError("nonce already used")) from e


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
