"""SQLite census store (the embedded default): WAL, synchronous=FULL, group commit.

The group committer and the rules are ``store_commit`` and ``store_rules`` (shared with
PostgreSQL); this module is the SQLite adapter: its connections, its
migrations and its transactions. One writer thread owns the only write
connection and runs each group the committer hands it (``BEGIN IMMEDIATE``,
a savepoint per job, one COMMIT: one WAL fsync for the whole group); the
committer answers the callers only after that COMMIT returned. Another
process may hold the write lock (several gateway processes on one file): the
connection waits up to ``_BUSY_TIMEOUT_S`` for it, and a group refused as
busy before its COMMIT committed nothing and is run again.

Reads run on a small thread pool, each thread with its own connection,
except the idempotency lookup of every batch (``find_batch``: one row by the
unique ``(device_id, seq)`` index, tens of microseconds): handing it to a
thread cost the event loop more than the query (docs/adr/0014-memory-and-tail.md),
so it runs on the event-loop thread on a read-only connection of its own. WAL
readers do not wait for the writer; if that connection is ever busy
(``_LOOKUP_BUSY_S``) the lookup goes to the pool instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import structlog

from runtime.private_files import prepare_private_sqlite

from ._schema_sqlite import MIGRATIONS
from .store import NotDurableError, StoreUnavailable
from .store_commit import (
    COMMIT,
    Dialect,
    EngineFailure,
    GroupCommitter,
    Job,
    Rows,
    Sql,
    Step,
    ValueRefused,
    drive_sync,
)
from .store_rules import SharedStore

__all__ = ["NotDurableError", "SqliteStore"]

T = TypeVar("T")

# Page cache of the write connection. The (device_id, seq) index takes inserts at one leaf per
# active tablet; the other pages it writes are appended. 32 MiB holds those leaves for
# thousands of tablets; 256 MiB (before ADR 0014's second part) was measured no faster on a
# store of 2 M sheets and kept up to 256 MiB of written pages resident in every process.
_WRITER_CACHE_KIB = 32 * 1024
_READER_CACHE_KIB = 64 * 1024
_BUSY_TIMEOUT_S = 30
_LOOKUP_BUSY_S = 0.05  # the event-loop thread's lookup connection never waits longer than this
_LOOKUP_CACHE_KIB = 16 * 1024
_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)

log = structlog.get_logger("sanaq.gateway")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
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


def _run(conn: sqlite3.Connection, sql: Sql) -> Rows:
    if sql.many:
        cur = conn.executemany(sql.text, sql.params)
        return Rows(cur.rowcount, [])
    cur = conn.execute(sql.text, sql.params)
    rows = [tuple(r) for r in cur.fetchall()] if cur.description is not None else []
    return Rows(cur.rowcount, rows)


def _write_statement(conn: sqlite3.Connection, sql: Sql) -> Rows:
    try:
        return _run(conn, sql)
    except (sqlite3.IntegrityError, sqlite3.DataError) as e:
        if sql is COMMIT:  # a COMMIT that fails fails its group
            raise EngineFailure(f"{e}", e.sqlite_errorname, retry=False) from e
        raise ValueRefused(f"SQLite refused the values: {e}", e.sqlite_errorname) from e
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF
        retry = code in _BUSY and sql is not COMMIT  # refused before anything was written
        raise EngineFailure(f"{e}", getattr(e, "sqlite_errorname", None), retry=retry) from e


def _read_statement(conn: sqlite3.Connection, sql: Sql) -> Rows:
    try:
        return _run(conn, sql)
    except sqlite3.Error as e:
        raise StoreUnavailable(f"store read failed: {e}") from e


class SqliteStore(SharedStore):
    DIALECT: ClassVar[Dialect] = Dialect(begin="BEGIN IMMEDIATE", notify_registry=None)
    PURGE_IN_GROUP: ClassVar[bool] = True  # one write connection per process: the purge is a write job

    def __init__(self, path: Path, *, max_group: int = 256, max_wait_ms: float = 2.0, durable: bool = True) -> None:
        self._path = path
        self._durable = durable
        self._committer = GroupCommitter(
            self._run_group, max_group=max_group, max_wait_s=max_wait_ms / 1000, name="sqlite-committer"
        )
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._lookup_conn: sqlite3.Connection | None = None

    # ---- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)
        self._lookup_conn = await asyncio.to_thread(self._open_lookup)
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._committer.start()

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

    def _open_lookup(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=_LOOKUP_BUSY_S)
        conn.execute(f"PRAGMA cache_size=-{_LOOKUP_CACHE_KIB}")
        conn.execute("PRAGMA query_only=1")
        return conn

    async def close(self) -> None:
        if self._lookup_conn is not None:
            self._lookup_conn.close()
            self._lookup_conn = None
        if self._writer is not None:
            await self._committer.stop()
            self._writer.shutdown(wait=True)
            self._writer = None
            self._conn.close()
            self._readers.shutdown(wait=True)
            with self._reader_lock:
                for conn in self._reader_conns:
                    conn.close()
                self._reader_conns.clear()

    # ---- the adapter: one group in one transaction on the writer thread, reads on the pool ------------
    async def _run_group(self, jobs: list[Job]) -> list[tuple[bool, object]]:
        if self._writer is None:
            raise EngineFailure("store is closed", None, retry=False)
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._run_group_sync, jobs)

    def _run_group_sync(self, jobs: list[Job]) -> list[tuple[bool, object]]:
        conn = self._conn
        try:
            return drive_sync(self._group_transaction(jobs), functools.partial(_write_statement, conn))
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    async def _read(self, rule: Callable[[], Step[T]]) -> T:
        if self._writer is None:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()

        def run() -> T:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
                )
                conn.execute(f"PRAGMA cache_size=-{_READER_CACHE_KIB}")  # idempotency lookups per request
                self._local.conn = conn
                with self._reader_lock:
                    self._reader_conns.append(conn)
            return drive_sync(rule(), functools.partial(_read_statement, conn))

        return await loop.run_in_executor(self._readers, run)

    async def _lookup(self, rule: Callable[[], Step[T]]) -> T:
        """On the event-loop thread (see the module docstring); on the pool if that connection is busy."""
        conn = self._lookup_conn
        if conn is None or self._writer is None:
            return await self._read(rule)
        try:
            return drive_sync(rule(), functools.partial(_read_statement, conn))
        except StoreUnavailable:
            return await self._read(rule)

    async def watch_registry(self, changed: Callable[[], None]) -> None:
        """Nothing to watch: one gateway process owns a SQLite file, and its own PUTs are in force at once."""
        del changed
