"""PostgreSQL census store set-up: versioned schema, migrations, privileges, durability check, URL options.

Migrations are appended, never edited. ``apply_migrations`` runs the missing
steps in one transaction holding a transaction-level advisory lock, so several
gateway instances starting at once apply each step exactly once (the others
wait, then find nothing left to do). A gateway whose role may not create
tables (the least-privilege deployment) finds the schema current and never
takes the lock; the owner role applies migrations with ``migrate`` and grants
the gateway role exactly ``APP_PRIVILEGES``.

Tables are created unqualified: the schema they land in is the first one on
the connecting role's ``search_path`` (``ALTER ROLE ... IN DATABASE ... SET
search_path``). ``main`` is the ``python -m gateway.store_postgres migrate``
command for the owner.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

# One exception class for both engines, so callers catch a single type.
from .store import NotDurableError, StoreError, StoreUnavailable

__all__ = [
    "APP_PRIVILEGES",
    "DURABLE_SYNCHRONOUS_COMMIT",
    "MIGRATIONS",
    "MIGRATION_LOCK_KEY",
    "NotDurableError",
    "apply_migrations",
    "check_durable",
    "grant_app_role",
    "main",
    "migrate",
    "pending_migrations",
    "split_pool_params",
]

# pg_advisory_xact_lock key (advisory locks are per database): a fixed label hashed to a signed bigint.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"sanaq-sync/census-store/migrations").digest()[:8], "big", signed=True
)

# synchronous_commit values that wait for the local WAL flush before COMMIT returns.
DURABLE_SYNCHRONOUS_COMMIT = frozenset({"on", "local", "remote_write", "remote_apply"})

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE batches (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            device_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            batch_hash BYTEA NOT NULL,
            envelope BYTEA NOT NULL,
            schema TEXT NOT NULL,
            sealed_at_ms BIGINT NOT NULL,
            request_created_s BIGINT NOT NULL,
            received_at_ms BIGINT NOT NULL,
            road TEXT NOT NULL,
            signer_key_id BYTEA NOT NULL,
            sheets_accepted INTEGER NOT NULL,
            sheets_quarantined INTEGER NOT NULL,
            receipt BYTEA NOT NULL,
            CONSTRAINT batches_device_seq_key UNIQUE (device_id, seq),
            CONSTRAINT batches_batch_hash_key UNIQUE (batch_hash)
        );
        CREATE INDEX batches_received ON batches (received_at_ms);
        CREATE TABLE sheets (
            batch_id BIGINT NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            sheet_id TEXT,
            institution_code TEXT,
            respondent_list_entry TEXT,
            body TEXT NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE INDEX sheets_institution ON sheets (institution_code);
        CREATE TABLE quarantine (
            batch_id BIGINT NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            reason TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE TABLE nonces (
            key_id BYTEA NOT NULL,
            nonce TEXT NOT NULL,
            expires_at_ms BIGINT NOT NULL,
            PRIMARY KEY (key_id, nonce)
        );
        CREATE INDEX nonces_expiry ON nonces (expires_at_ms);
        CREATE TABLE security_events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at_ms BIGINT NOT NULL,
            kind TEXT NOT NULL,
            device_id TEXT,
            seq BIGINT,
            key_id TEXT,
            detail TEXT NOT NULL
        );
        CREATE TABLE registry (
            id SMALLINT PRIMARY KEY CHECK (id = 1),
            version BIGINT NOT NULL,
            snapshot BYTEA NOT NULL
        );
        CREATE TABLE custody (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            station_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            pulled_at_ms BIGINT NOT NULL,
            received_at_ms BIGINT NOT NULL,
            batch_count INTEGER NOT NULL,
            record BYTEA NOT NULL,
            record_hash BYTEA NOT NULL UNIQUE
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE persons (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            batch_id BIGINT NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            road TEXT NOT NULL,
            source TEXT NOT NULL,
            region TEXT NOT NULL,
            person_key TEXT,
            counted_at_ms BIGINT NOT NULL,
            CONSTRAINT persons_entry_key UNIQUE (institution_code, entry_id)
        );
        CREATE TABLE person_keys (
            institution_code TEXT NOT NULL,
            person_key TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            batch_id BIGINT NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            PRIMARY KEY (institution_code, person_key)
        );
        CREATE TABLE review_cases (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('same-entry', 'possible-duplicate')),
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            first_batch_id BIGINT NOT NULL REFERENCES batches (id),
            first_idx INTEGER NOT NULL,
            second_batch_id BIGINT NOT NULL REFERENCES batches (id),
            second_idx INTEGER NOT NULL,
            opened_at_ms BIGINT NOT NULL,
            CONSTRAINT review_cases_second_key UNIQUE (second_batch_id, second_idx, kind)
        );
        CREATE INDEX review_cases_entry ON review_cases (institution_code, entry_id);
        """,
    ),
)

# What the gateway's own role needs, table by table: it never updates or deletes
# a stored batch, sheet or event. (DELETE on nonces is the expiry purge; UPDATE
# on registry is the version-guarded upsert.)
APP_PRIVILEGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("schema_migrations", ("SELECT",)),
    ("batches", ("SELECT", "INSERT")),
    ("sheets", ("SELECT", "INSERT")),
    ("quarantine", ("SELECT", "INSERT")),
    ("nonces", ("SELECT", "INSERT", "DELETE")),
    ("security_events", ("SELECT", "INSERT")),
    ("registry", ("SELECT", "INSERT", "UPDATE")),
    ("custody", ("SELECT", "INSERT")),
    ("persons", ("SELECT", "INSERT")),
    ("person_keys", ("SELECT", "INSERT")),
    ("review_cases", ("SELECT", "INSERT")),
)

_POOL_PARAMS = ("pool_min_size", "pool_max_size", "pool_timeout_s")
_CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)"
)


def check_durable(fsync: str, synchronous_commit: str) -> None:
    """Refuse a server that may acknowledge a COMMIT it has not flushed to disk."""
    if fsync.lower() != "on" or synchronous_commit.lower() not in DURABLE_SYNCHRONOUS_COMMIT:
        raise NotDurableError(
            f"PostgreSQL store not durable: fsync={fsync} synchronous_commit={synchronous_commit}"
            " (need fsync=on and synchronous_commit on|local|remote_write|remote_apply)"
        )


async def check_connection_durable(conn: psycopg.AsyncConnection) -> None:
    """The settings as this role, on this database, in this session, really see them."""
    cur = await conn.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
    row = await cur.fetchone()
    if row is None:
        raise NotDurableError("the server did not report fsync and synchronous_commit")
    check_durable(str(row[0]), str(row[1]))


async def pending_migrations(conn: psycopg.AsyncConnection) -> list[int]:
    """Versions not yet applied; every version when the schema does not exist yet."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return [v for v, _ in MIGRATIONS]
    cur = await conn.execute("SELECT version FROM schema_migrations")
    done = {r[0] for r in await cur.fetchall()}
    return [v for v, _ in MIGRATIONS if v not in done]


async def apply_migrations(conn: psycopg.AsyncConnection) -> list[int]:
    """Apply missing steps under the advisory lock; returns the versions this call applied.

    ``conn`` must be in autocommit mode (the step runs in its own transaction).
    """
    if not await pending_migrations(conn):
        return []
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(_CREATE_MIGRATIONS_TABLE)
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {r[0] for r in await cur.fetchall()}
        for version, ddl in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(ddl)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (%s, %s)",
                (version, time.time_ns() // 1_000_000),
            )
            applied.append(version)
    return applied


async def grant_app_role(conn: psycopg.AsyncConnection, role: str) -> None:
    """Grant ``role`` exactly ``APP_PRIVILEGES`` (run as the owner, after migrating)."""
    async with conn.transaction():
        for table, privileges in APP_PRIVILEGES:
            await conn.execute(
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(p) for p in privileges), sql.Identifier(table), sql.Identifier(role)
                )
            )


def split_pool_params(dsn: str) -> tuple[str, dict[str, float]]:
    """Take the pool options out of a ``postgresql://`` URL; other DSN forms pass through."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        return dsn, {}
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: float(v) for k, v in query if k in _POOL_PARAMS}
    if not options:
        return dsn, {}
    rest = urlencode([(k, v) for k, v in query if k not in _POOL_PARAMS])
    return urlunsplit(parts._replace(query=rest)), options


async def migrate(dsn: str, *, grant_to: str | None = None) -> list[int]:
    """Apply pending migrations (as the schema owner); optionally grant the gateway role its privileges."""
    conninfo, _ = split_pool_params(dsn)
    try:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            applied = await apply_migrations(conn)
            if grant_to:
                await grant_app_role(conn, grant_to)
    except psycopg.Error as e:
        raise StoreUnavailable(f"migration failed: {e}") from e
    return applied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.store_postgres", description="PostgreSQL census store tools.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="apply pending schema migrations (run as the schema owner)")
    m.add_argument("--dsn", default="", help="libpq URL or key=value string; empty: PGHOST, PGDATABASE, ... apply")
    m.add_argument("--grant-to", metavar="ROLE", help="grant this (gateway) role the privileges it needs")
    args = p.parse_args(argv)
    try:
        applied = asyncio.run(migrate(args.dsn, grant_to=args.grant_to))
    except StoreError as e:
        print(f"store_postgres: {e}", file=sys.stderr)
        return 1
    print(f"applied migrations: {applied or 'none'}" + (f"; granted to {args.grant_to}" if args.grant_to else ""))
    return 0
