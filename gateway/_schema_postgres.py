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
    "CENSUS_CHANNEL",
    "DURABLE_SYNCHRONOUS_COMMIT",
    "MIGRATIONS",
    "MIGRATION_LOCK_KEY",
    "STAFF_CHANNEL",
    "NotDurableError",
    "apply_migrations",
    "check_durable",
    "error_text",
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
    (
        5,
        # The staff dashboard's tables (staff.db migrations 1-5 on SQLite, same columns in the same order) and
        # the notifications that carry changes to every instance's dashboard (ADR 0012).
        """
        CREATE TABLE users (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'admin')),
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at_ms BIGINT NOT NULL,
            password_changed_at_ms BIGINT NOT NULL,
            language TEXT CHECK (language IN ('kk', 'ru', 'en'))
        );
        CREATE TABLE sessions (
            token_hash BYTEA PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            last_seen_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL
        );
        CREATE INDEX sessions_expiry ON sessions (expires_at_ms);
        CREATE INDEX sessions_user ON sessions (user_id);
        CREATE TABLE login_failures (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subject TEXT NOT NULL,
            at_ms BIGINT NOT NULL
        );
        CREATE INDEX login_failures_subject ON login_failures (subject, at_ms);
        CREATE TABLE login_pairs (
            username TEXT NOT NULL,
            address TEXT NOT NULL,
            failures INTEGER NOT NULL,
            next_allowed_ms BIGINT NOT NULL,
            PRIMARY KEY (username, address)
        );
        CREATE INDEX login_pairs_next ON login_pairs (next_allowed_ms);
        CREATE TABLE audit (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at_ms BIGINT NOT NULL,
            user_id BIGINT,
            action TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE TABLE acts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
            acted_at_ms BIGINT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            created_by BIGINT NOT NULL REFERENCES users (id),
            registry_version BIGINT,
            registry_status TEXT
        );
        CREATE INDEX acts_device ON acts (device_id, acted_at_ms, id);
        CREATE TABLE respondent_lists (
            institution_code TEXT PRIMARY KEY,
            list_date TEXT NOT NULL,
            district TEXT NOT NULL,
            entry_count INTEGER NOT NULL,
            imported_at_ms BIGINT NOT NULL,
            imported_by BIGINT REFERENCES users (id),
            source_name TEXT NOT NULL
        );
        CREATE TABLE respondent_entries (
            institution_code TEXT NOT NULL REFERENCES respondent_lists (institution_code),
            entry_id TEXT NOT NULL,
            surname TEXT NOT NULL,
            given_name TEXT NOT NULL,
            patronymic TEXT NOT NULL,
            birth_date TEXT NOT NULL,
            added_at_ms BIGINT,
            added_by BIGINT,
            household TEXT,
            PRIMARY KEY (institution_code, entry_id)
        );
        CREATE TABLE access_codes (
            code_hash TEXT PRIMARY KEY,
            entry_id TEXT NOT NULL,
            institution_code TEXT NOT NULL,
            institution_kind TEXT NOT NULL,
            worker_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
            issued_at_ms BIGINT NOT NULL,
            issued_by BIGINT REFERENCES users (id),
            revoked_at_ms BIGINT,
            version BIGINT NOT NULL UNIQUE,
            members TEXT
        );
        CREATE UNIQUE INDEX access_codes_one_active ON access_codes (entry_id) WHERE status = 'active';
        CREATE INDEX access_codes_institution ON access_codes (institution_code, entry_id);
        CREATE TABLE user_institutions (
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            institution_code TEXT NOT NULL,
            PRIMARY KEY (user_id, institution_code)
        );
        CREATE TABLE review_decisions (
            case_id BIGINT PRIMARY KEY,
            decision TEXT NOT NULL CHECK (decision IN ('keep-first', 'keep-second', 'different')),
            institution_code TEXT NOT NULL,
            new_entry_id TEXT,
            decided_by BIGINT NOT NULL REFERENCES users (id),
            decided_at_ms BIGINT NOT NULL
        );
        CREATE TABLE list_match_decisions (
            batch_id BIGINT NOT NULL,
            idx INTEGER NOT NULL,
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            listed_entry_id TEXT NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN ('same-person', 'different')),
            decided_by BIGINT NOT NULL REFERENCES users (id),
            decided_at_ms BIGINT NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE TABLE assignment_versions (
            institution_code TEXT PRIMARY KEY,
            version BIGINT NOT NULL
        );
        CREATE TABLE assignment_status (
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            status TEXT NOT NULL,
            device_id TEXT NOT NULL,
            at_ms BIGINT,
            surname TEXT NOT NULL,
            given_name TEXT NOT NULL,
            patronymic TEXT NOT NULL,
            birth_date TEXT NOT NULL,
            version BIGINT NOT NULL,
            PRIMARY KEY (institution_code, entry_id)
        );
        CREATE INDEX assignment_status_version ON assignment_status (institution_code, version);
        CREATE FUNCTION sanaq_census_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('sanaq_census', TG_TABLE_NAME);
            RETURN NULL;
        END $$;
        CREATE FUNCTION sanaq_staff_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('sanaq_staff', TG_TABLE_NAME);
            RETURN NULL;
        END $$;
        CREATE TRIGGER batches_notify AFTER INSERT ON batches
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_census_changed();
        CREATE TRIGGER security_events_notify AFTER INSERT ON security_events
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_census_changed();
        CREATE TRIGGER custody_notify AFTER INSERT ON custody
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_census_changed();
        CREATE TRIGGER review_cases_notify AFTER INSERT ON review_cases
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_census_changed();
        CREATE TRIGGER respondent_lists_notify AFTER INSERT OR UPDATE OR DELETE ON respondent_lists
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_staff_changed();
        CREATE TRIGGER respondent_entries_notify AFTER INSERT OR UPDATE OR DELETE ON respondent_entries
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_staff_changed();
        CREATE TRIGGER acts_notify AFTER INSERT ON acts
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_staff_changed();
        CREATE TRIGGER review_decisions_notify AFTER INSERT ON review_decisions
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_staff_changed();
        CREATE TRIGGER list_match_decisions_notify AFTER INSERT ON list_match_decisions
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_staff_changed();
        CREATE TRIGGER access_codes_notify AFTER INSERT OR UPDATE ON access_codes
            FOR EACH STATEMENT EXECUTE FUNCTION sanaq_staff_changed()
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
    # The staff dashboard's tables (migration 5): sessions and login throttling come and go; lists are
    # re-imported; codes are revoked; the tablets' assignment state is upserted. Acts, decisions and the
    # audit trail are insert-only, as are accounts apart from their password, language and disabled flag.
    ("users", ("SELECT", "INSERT", "UPDATE")),
    ("sessions", ("SELECT", "INSERT", "UPDATE", "DELETE")),
    ("login_failures", ("SELECT", "INSERT", "DELETE")),
    ("login_pairs", ("SELECT", "INSERT", "UPDATE", "DELETE")),
    ("audit", ("SELECT", "INSERT")),
    ("acts", ("SELECT", "INSERT")),
    ("respondent_lists", ("SELECT", "INSERT", "UPDATE")),
    ("respondent_entries", ("SELECT", "INSERT", "DELETE")),
    ("access_codes", ("SELECT", "INSERT", "UPDATE")),
    ("user_institutions", ("SELECT", "INSERT", "DELETE")),
    ("review_decisions", ("SELECT", "INSERT")),
    ("list_match_decisions", ("SELECT", "INSERT")),
    ("assignment_versions", ("SELECT", "INSERT", "UPDATE")),
    ("assignment_status", ("SELECT", "INSERT", "UPDATE")),
)

# NOTIFY channels of migration 5's triggers: census data and staff data changed (the payload is the table).
CENSUS_CHANNEL = "sanaq_census"
STAFF_CHANNEL = "sanaq_staff"

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


def error_text(e: psycopg.Error) -> str:
    """A PostgreSQL error without its DETAIL (which quotes row values: names, birth dates) for messages and logs."""
    primary = e.diag.message_primary if e.diag is not None else None
    text = primary or str(e).split("\n", 1)[0]
    return f"{text} (SQLSTATE {e.sqlstate})" if e.sqlstate else text
