"""Versioned schema migrations of the SQLite census store. Append, never edit, a step.

A step is SQL (statements separated by ``;``) or a function of the open
connection, for a change that depends on what the store holds. Each runs in
its own ``BEGIN IMMEDIATE`` transaction (``SqliteStore.open``).

Step 1 was edited in place once (2026-11-26: ``sheets`` and ``quarantine``
lost ``WITHOUT ROWID``), so stores created before that still hold them as
``WITHOUT ROWID`` tables; step 4 rebuilds those as ordinary rowid tables
(ADR 0009) and leaves stores that already have the rowid layout alone.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS", "ROWID_TABLES", "Step", "rebuild_as_rowid_table"]

Step = str | Callable[[sqlite3.Connection], None]

# Tables of large rows (sheet bodies of about 1.4 KB) that must be ordinary rowid tables: in a
# WITHOUT ROWID table such a row overflows the B-tree's small-row page layout (ADR 0009).
ROWID_TABLES = ("sheets", "quarantine")
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.IGNORECASE)


def rebuild_as_rowid_table(conn: sqlite3.Connection, table: str) -> bool:
    """Rebuild ``table`` as an ordinary rowid table if it is ``WITHOUT ROWID``; returns whether it did.

    The table's own stored definition is reused (columns, keys, checks and
    references, including any added by later steps) with only ``WITHOUT
    ROWID`` dropped; rows are copied in primary-key order, then its indexes and
    triggers are made again from their stored definitions (views that name it
    keep working: they refer to it by name). Runs inside the caller's
    transaction (SQLite DDL is transactional): on any error nothing changed.
    Raises ``sqlite3.IntegrityError`` (before copying anything) if a row breaks a reference.
    """
    if table not in ROWID_TABLES:  # names are pasted into SQL below: only the known ones
        raise ValueError(f"not a table this step rebuilds: {table!r}")
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if row is None or not _WITHOUT_ROWID.search(row[0]):
        return False
    head = re.match(rf'^\s*CREATE\s+TABLE\s+(?:"{table}"|{table})\s*\(', row[0], re.IGNORECASE)
    if head is None:
        raise sqlite3.OperationalError(f"unexpected definition of table {table}: {row[0][:80]!r}")
    scratch = f"{table}_rowid_rebuild"
    body = _WITHOUT_ROWID.sub(")", row[0][head.end() :])
    dependents = [r[0] for r in conn.execute(  # indexes and triggers: dropped with the table, made again after
        "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = ? AND sql IS NOT NULL"
        " ORDER BY type, name",
        (table,),
    )]
    broken = conn.execute(f'PRAGMA foreign_key_check("{table}")').fetchall()
    if broken:
        raise sqlite3.IntegrityError(f"{len(broken)} rows of {table} reference missing rows, e.g. {broken[0]}")
    conn.execute(f'DROP TABLE IF EXISTS "{scratch}"')
    conn.execute(f'CREATE TABLE "{scratch}" ({body}')
    conn.execute(f'INSERT INTO "{scratch}" SELECT * FROM "{table}"')  # noqa: S608 - a name of ROWID_TABLES
    conn.execute(f'DROP TABLE "{table}"')
    # Legacy rename: renames only the table, without re-checking views that name the (now dropped) old one.
    legacy = conn.execute("PRAGMA legacy_alter_table").fetchone()[0]
    conn.execute("PRAGMA legacy_alter_table = ON")
    try:
        conn.execute(f'ALTER TABLE "{scratch}" RENAME TO "{table}"')
    finally:
        conn.execute(f"PRAGMA legacy_alter_table = {'ON' if legacy else 'OFF'}")
    for sql in dependents:
        conn.execute(sql)
    return True


def _rowid_sheets(conn: sqlite3.Connection) -> None:
    for table in ROWID_TABLES:
        rebuild_as_rowid_table(conn, table)


MIGRATIONS: tuple[tuple[int, Step], ...] = (
    (
        1,
        """
        CREATE TABLE batches (
            id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            batch_hash BLOB NOT NULL,
            envelope BLOB NOT NULL,
            schema TEXT NOT NULL,
            sealed_at_ms INTEGER NOT NULL,
            request_created_s INTEGER NOT NULL,
            received_at_ms INTEGER NOT NULL,
            road TEXT NOT NULL,
            signer_key_id BLOB NOT NULL,
            sheets_accepted INTEGER NOT NULL,
            sheets_quarantined INTEGER NOT NULL,
            receipt BLOB NOT NULL,
            UNIQUE (device_id, seq)
        );
        CREATE INDEX batches_received ON batches (received_at_ms);
        CREATE TABLE sheets (
            batch_id INTEGER NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            sheet_id TEXT,
            institution_code TEXT,
            respondent_list_entry TEXT,
            body TEXT NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE INDEX sheets_institution ON sheets (institution_code);
        CREATE TABLE quarantine (
            batch_id INTEGER NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            reason TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE TABLE nonces (
            key_id BLOB NOT NULL,
            nonce TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL,
            PRIMARY KEY (key_id, nonce)
        ) WITHOUT ROWID;
        CREATE INDEX nonces_expiry ON nonces (expires_at_ms);
        CREATE TABLE security_events (
            id INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            device_id TEXT,
            seq INTEGER,
            key_id TEXT,
            detail TEXT NOT NULL
        );
        CREATE TABLE registry (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL,
            snapshot BLOB NOT NULL
        );
        CREATE TABLE custody (
            id INTEGER PRIMARY KEY,
            station_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            pulled_at_ms INTEGER NOT NULL,
            received_at_ms INTEGER NOT NULL,
            batch_count INTEGER NOT NULL,
            record BLOB NOT NULL,
            record_hash BLOB NOT NULL UNIQUE
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE persons (
            id INTEGER PRIMARY KEY,
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            batch_id INTEGER NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            road TEXT NOT NULL,
            source TEXT NOT NULL,
            region TEXT NOT NULL,
            person_key TEXT,
            counted_at_ms INTEGER NOT NULL,
            UNIQUE (institution_code, entry_id)
        );
        CREATE TABLE person_keys (
            institution_code TEXT NOT NULL,
            person_key TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            batch_id INTEGER NOT NULL REFERENCES batches (id),
            idx INTEGER NOT NULL,
            PRIMARY KEY (institution_code, person_key)
        ) WITHOUT ROWID;
        CREATE TABLE review_cases (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('same-entry', 'possible-duplicate')),
            institution_code TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            first_batch_id INTEGER NOT NULL REFERENCES batches (id),
            first_idx INTEGER NOT NULL,
            second_batch_id INTEGER NOT NULL REFERENCES batches (id),
            second_idx INTEGER NOT NULL,
            opened_at_ms INTEGER NOT NULL,
            UNIQUE (second_batch_id, second_idx, kind)
        );
        CREATE INDEX review_cases_entry ON review_cases (institution_code, entry_id)
        """,
    ),
    (4, _rowid_sheets),
    # 5 is the staff tables on PostgreSQL (ADR 0012); a SQLite deployment keeps them in staff.db.
    (5, ""),
)
