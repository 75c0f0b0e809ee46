"""Staff data storage (accounts, sessions, acts, respondent lists, access codes, review decisions).

The staff modules write their SQL once, against ``StaffConn`` (the part of
``sqlite3.Connection`` they use: ``execute``/``executemany`` with ``?``
placeholders), and run it through a ``StaffStorage``: ``run(fn)`` calls
``fn(conn)`` on the one thread that owns the connection. Two storages:

* ``StaffDb`` (here): on a SQLite deployment, ``staff.db``, a SQLite file of
  its own beside the census database (its own lifecycle and backups; the
  dashboard never writes census tables). One connection, owned by one worker
  thread, serialises every access; migrations are versioned and applied in
  order at open (append steps, never edit one).
* ``PgStaffDb`` (``db_postgres``): on a PostgreSQL deployment, the staff
  tables of the census PostgreSQL database (census migration 5), so every
  gateway instance sees the same accounts, sessions and decisions (ADR 0012).

``transaction(conn)`` is the write transaction on both: ``BEGIN IMMEDIATE``
on SQLite; on PostgreSQL a savepoint holding the staff advisory lock, which
serialises staff writes across instances the way ``BEGIN IMMEDIATE`` does
across SQLite connections. ``INTEGRITY_ERRORS`` is what a broken UNIQUE or
CHECK raises on either engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from runtime.private_files import prepare_private_sqlite

from .errors import StaffStoreError

__all__ = [
    "INTEGRITY_ERRORS",
    "MIGRATIONS",
    "StaffConn",
    "StaffCursor",
    "StaffDb",
    "StaffStorage",
    "ThreadOwnedConnection",
    "connect_staff_db",
    "transaction",
]

T = TypeVar("T")

# A UNIQUE, CHECK or foreign-key violation, on either engine.
# psycopg is the PostgreSQL extra: a SQLite-only install has no PostgreSQL errors to catch.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
try:
    import psycopg
except ImportError:  # pragma: no cover - the test environment has the extra
    pass
else:
    INTEGRITY_ERRORS += (psycopg.IntegrityError,)


class StaffCursor(Protocol):
    """What the staff modules use of a cursor (``sqlite3.Cursor`` is one)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class StaffConn(Protocol):
    """What the staff modules use of a connection (``sqlite3.Connection`` is one): ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> StaffCursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> StaffCursor: ...


class StaffStorage(Protocol):
    """Where staff data lives for asyncio code: ``run(fn)`` calls ``fn(conn)`` on the connection's own thread."""

    @property
    def where(self) -> str:
        """What to name in logs (a path, or the PostgreSQL database; never a password)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def run(self, fn: Callable[[StaffConn], T]) -> T:
        """Run ``fn(conn)``; engine errors become ``StaffStoreError``."""
        ...

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'admin')),
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at_ms INTEGER NOT NULL,
            password_changed_at_ms INTEGER NOT NULL
        );
        CREATE TABLE sessions (
            token_hash BLOB PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            last_seen_ms INTEGER NOT NULL,
            expires_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX sessions_expiry ON sessions (expires_at_ms);
        CREATE TABLE login_failures (
            id INTEGER PRIMARY KEY,
            subject TEXT NOT NULL,
            at_ms INTEGER NOT NULL
        );
        CREATE INDEX login_failures_subject ON login_failures (subject, at_ms);
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            user_id INTEGER,
            action TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE TABLE acts (
            id INTEGER PRIMARY KEY,
            act_no TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('issue', 'return')),
            device_id TEXT NOT NULL,
            usb_serial TEXT NOT NULL,
            institution TEXT NOT NULL,
            worker_id TEXT NOT NULL,
            worker_name TEXT NOT NULL,
            staff_name TEXT NOT NULL,
            accessories TEXT NOT NULL,
            condition_note TEXT NOT NULL,
            acted_at_ms INTEGER NOT NULL,
            created_at_ms INTEGER NOT NULL,
            created_by INTEGER NOT NULL REFERENCES users (id),
            registry_version INTEGER,
            registry_status TEXT
        );
        CREATE INDEX acts_device ON acts (device_id, acted_at_ms, id);
        CREATE TABLE respondent_lists (
            institution_code TEXT PRIMARY KEY,
            list_date TEXT NOT NULL,
            district TEXT NOT NULL,
            entry_count INTEGER NOT NULL,
            imported_at_ms INTEGER NOT NULL,
            imported_by INTEGER REFERENCES users (id),
            source_name TEXT NOT NULL
        );
        CREATE TABLE respondent_entries (
            institution_code TEXT NOT NULL REFERENCES respondent_lists (institution_code),
            entry_id TEXT NOT NULL,
            surname TEXT NOT NULL,
            given_name TEXT NOT NULL,
            patronymic TEXT NOT NULL,
            birth_date TEXT NOT NULL,
            PRIMARY KEY (institution_code, entry_id)
        ) WITHOUT ROWID;
        """,
    ),
    (
        2,
        """
        CREATE TABLE login_pairs (
            username TEXT NOT NULL,
            address TEXT NOT NULL,
            failures INTEGER NOT NULL,
            next_allowed_ms INTEGER NOT NULL,
            PRIMARY KEY (username, address)
        ) WITHOUT ROWID;
        CREATE INDEX login_pairs_next ON login_pairs (next_allowed_ms);
        DELETE FROM login_failures WHERE subject NOT LIKE 'user:%';
        """,
    ),
    (
        3,
        """
        CREATE TABLE access_codes (
            code_hash TEXT PRIMARY KEY,
            entry_id TEXT NOT NULL,
            institution_code TEXT NOT NULL,
            institution_kind TEXT NOT NULL,
            worker_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
            issued_at_ms INTEGER NOT NULL,
            issued_by INTEGER REFERENCES users (id),
            revoked_at_ms INTEGER,
            version INTEGER NOT NULL UNIQUE,
            members TEXT
        );
        CREATE UNIQUE INDEX access_codes_one_active ON access_codes (entry_id) WHERE status = 'active';
        CREATE INDEX access_codes_institution ON access_codes (institution_code, entry_id);
        ALTER TABLE respondent_entries ADD COLUMN added_at_ms INTEGER;
        ALTER TABLE respondent_entries ADD COLUMN added_by INTEGER;
        ALTER TABLE respondent_entries ADD COLUMN household TEXT;
        CREATE TABLE user_institutions (
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            institution_code TEXT NOT NULL,
            PRIMARY KEY (user_id, institution_code)
        ) WITHOUT ROWID;
        """,
    ),
    (
        4,
        """
        ALTER TABLE users ADD COLUMN language TEXT CHECK (language IN ('kk', 'ru', 'en'))
        """,
    ),
    (
        5,
        """
        CREATE TABLE review_decisions (
            case_id INTEGER PRIMARY KEY,
            decision TEXT NOT NULL CHECK (decision IN ('keep-first', 'keep-second', 'different')),
            institution_code TEXT NOT NULL,
            new_entry_id TEXT,
            decided_by INTEGER NOT NULL REFERENCES users (id),
            decided_at_ms INTEGER NOT NULL
        );
        CREATE TABLE list_match_decisions (
            batch_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            listed_entry_id TEXT NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN ('same-person', 'different')),
            decided_by INTEGER NOT NULL REFERENCES users (id),
            decided_at_ms INTEGER NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE TABLE assignment_versions (
            institution_code TEXT PRIMARY KEY,
            version INTEGER NOT NULL
        );
        CREATE TABLE assignment_status (
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            status TEXT NOT NULL,
            device_id TEXT NOT NULL,
            at_ms INTEGER,
            surname TEXT NOT NULL,
            given_name TEXT NOT NULL,
            patronymic TEXT NOT NULL,
            birth_date TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (institution_code, entry_id)
        ) WITHOUT ROWID;
        CREATE INDEX assignment_status_version ON assignment_status (institution_code, version);
        """,
    ),
)


@contextlib.contextmanager
def transaction(conn: StaffConn) -> Iterator[StaffConn]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (PostgreSQL: see ``db_postgres``)."""
    write_transaction = getattr(conn, "write_transaction", None)
    if write_transaction is not None:
        with write_transaction():
            yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect_staff_db(path: Path, *, now_ms: int) -> sqlite3.Connection:
    """Open (creating if needed, mode 0600) and migrate staff.db; raises ``StaffStoreError``."""
    try:
        prepare_private_sqlite(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            with transaction(conn):
                for stmt in sql.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now_ms))
    except (sqlite3.Error, OSError) as e:
        raise StaffStoreError(f"cannot open staff database {path}: {e}") from e
    return conn


class ThreadOwnedConnection:
    """One SQLite connection used from asyncio: every job runs on the one thread that owns it.

    ``sqlite3.Error`` raised by a job becomes ``StaffStoreError`` naming ``what``.
    """

    def __init__(self, thread_name: str, what: str) -> None:
        self._thread_name = thread_name
        self._what = what
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        self._conn = await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    async def close(self) -> None:
        if self._pool is None:
            return
        conn, pool = self._conn, self._pool
        self._conn, self._pool = None, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        pool.shutdown(wait=True)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None or self._conn is None:
            raise StaffStoreError(f"{self._what} is closed")
        conn = self._conn

        def job() -> T:
            try:
                return fn(conn)
            except sqlite3.Error as e:
                raise StaffStoreError(f"{self._what} operation failed: {e}") from e

        return await asyncio.get_running_loop().run_in_executor(self._pool, job)


class StaffDb:
    """staff.db for asyncio code: every job runs on the one thread that owns the connection."""

    def __init__(self, path: Path, clock: Callable[[], int]) -> None:
        self.path = path
        self._clock = clock
        self._owner = ThreadOwnedConnection("staff-db", "staff database")

    @property
    def where(self) -> str:
        return str(self.path)

    async def open(self) -> None:
        await self._owner.open(lambda: connect_staff_db(self.path, now_ms=self._clock()))

    async def close(self) -> None:
        await self._owner.close()

    async def run(self, fn: Callable[[StaffConn], T]) -> T:
        """Run ``fn(conn)`` on the owner thread; sqlite errors become ``StaffStoreError``."""
        return await self._owner.run(fn)
