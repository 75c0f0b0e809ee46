"""Staff data on PostgreSQL: the staff tables of the census database (census migration 5, ADR 0012).

The staff modules' SQL is written once, for ``StaffConn`` (``?``
placeholders, SQLite's spelling); ``PgStaffConn`` runs it on a synchronous
psycopg connection, translating the few spellings that differ (``_translate``):
placeholders, a literal ``%``, and ``json_each(X)`` (a JSON array's elements)
as ``json_array_elements_text(X::json)``. Nothing else is rewritten; SQL
that needs more must be written portably in its module.

``PgStaffDb.run(fn)`` runs ``fn`` in ONE transaction (READ COMMITTED) on the
connection its worker thread owns, so a job sees and leaves a consistent
state as it does on SQLite. ``db.transaction(conn)`` inside a job (the staff
modules' write transaction) is a savepoint that first takes
``STAFF_LOCK_KEY`` as a transaction-level advisory lock: staff writes are
serialised across every gateway instance, as ``BEGIN IMMEDIATE`` serialises
them on staff.db (e.g. the next act number and access-code version are read
then written). A connection found broken is replaced before the next job.

The tables are created by the census store's migrations (the schema owner
runs them; the gateway's role has the grants of ``APP_PRIVILEGES``), so
opening only checks that migration 5 is there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from gateway._schema_postgres import NotDurableError, check_durable, error_text, split_pool_params

from .db import StaffConn, StaffCursor
from .errors import StaffStoreError

__all__ = ["STAFF_LOCK_KEY", "PgStaffConn", "PgStaffDb", "connect_pg_staff", "describe_dsn", "error_text",
           "run_in_transaction"]

T = TypeVar("T")

# pg_advisory_xact_lock key of staff writes (a fixed label hashed to a signed bigint, like the migration lock).
STAFF_LOCK_KEY = int.from_bytes(hashlib.sha256(b"sanaq-sync/staff/writes").digest()[:8], "big", signed=True)

_STAFF_SCHEMA_VERSION = 5  # the census migration that creates the staff tables
_JSON_EACH = re.compile(r"\bjson_each\(([^()]*)\)")


@functools.lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    """SQLite-spelled staff SQL as psycopg wants it (cached: the texts are the modules' constants)."""
    if "'?'" in sql or '"?"' in sql:  # a quoted question mark would be turned into a placeholder
        raise ValueError("a literal '?' in staff SQL cannot be translated")
    sql = _JSON_EACH.sub(r"json_array_elements_text(\1::json)", sql)
    return sql.replace("%", "%%").replace("?", "%s")


def describe_dsn(dsn: str) -> str:
    """``postgresql:db@host`` for logs and messages: never the password or other options."""
    conninfo, _ = split_pool_params(dsn)
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "postgresql"
    return f"postgresql:{parts.get('dbname', '')}@{parts.get('host', '')}"


class PgStaffConn:
    """A ``StaffConn`` on a psycopg connection (autocommit; the caller opens the transaction)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> StaffCursor:
        return self.raw.execute(_translate(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> StaffCursor:
        cur = self.raw.cursor()
        cur.executemany(_translate(sql), [tuple(p) for p in parameters])
        return cur

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        """``db.transaction`` on PostgreSQL: a savepoint holding the staff write lock until the job commits."""
        with self.raw.transaction():
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (STAFF_LOCK_KEY,))
            yield


def connect_pg_staff(dsn: str) -> psycopg.Connection[Any]:
    """Connect (autocommit), check that the staff tables exist and commits are durable; raises ``StaffStoreError``."""
    conninfo, _ = split_pool_params(dsn)
    try:
        conn = psycopg.Connection.connect(conninfo, autocommit=True, application_name="sanaq-gateway-staff")
    except psycopg.Error as e:
        raise StaffStoreError(f"cannot connect to the staff tables at {describe_dsn(dsn)}: {error_text(e)}") from e
    try:
        row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if row is not None and row[0]:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = %s)", (_STAFF_SCHEMA_VERSION,)
            ).fetchone()
    except psycopg.Error as e:
        conn.close()
        raise StaffStoreError(f"cannot read the schema version at {describe_dsn(dsn)}: {error_text(e)}") from e
    if row is not None and row[0]:
        try:
            fsync, synchronous_commit = conn.execute(
                "SELECT current_setting('fsync'), current_setting('synchronous_commit')"
            ).fetchone() or ("", "")
            check_durable(str(fsync), str(synchronous_commit))
        except psycopg.Error as e:
            conn.close()
            raise StaffStoreError(f"staff tables at {describe_dsn(dsn)}: {error_text(e)}") from e
        except NotDurableError as e:
            conn.close()
            raise StaffStoreError(f"staff tables at {describe_dsn(dsn)}: {e}") from e
        return conn
    conn.close()
    raise StaffStoreError(
        f"the staff tables are missing at {describe_dsn(dsn)}: apply census migration {_STAFF_SCHEMA_VERSION}"
        " (python -m gateway.store_postgres migrate, as the schema owner)"
    )


def run_in_transaction(conn: psycopg.Connection[Any], fn: Callable[[StaffConn], T]) -> T:
    """``fn`` in one transaction on ``conn``: committed when it returns, rolled back when it raises."""
    with conn.transaction():
        return fn(PgStaffConn(conn))


class PgStaffDb:
    """The staff tables on PostgreSQL for asyncio code: one connection, owned by one worker thread."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def where(self) -> str:
        return describe_dsn(self._dsn)

    async def open(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="staff-db-pg")
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._pool, connect_pg_staff, self._dsn)
        except BaseException:
            self._pool.shutdown(wait=True)
            self._pool = None
            raise

    async def close(self) -> None:
        if self._pool is None:
            return
        conn, pool = self._conn, self._pool
        self._conn, self._pool = None, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        pool.shutdown(wait=True)

    async def run(self, fn: Callable[[StaffConn], T]) -> T:
        if self._pool is None:
            raise StaffStoreError("the staff database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._job, fn)

    def _job(self, fn: Callable[[StaffConn], T]) -> T:
        try:
            if self._conn is None or self._conn.broken or self._conn.closed:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._conn = connect_pg_staff(self._dsn)
            return run_in_transaction(self._conn, fn)
        except psycopg.Error as e:
            raise StaffStoreError(f"staff database operation failed: {error_text(e)}") from e
