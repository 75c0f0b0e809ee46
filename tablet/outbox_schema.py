"""The outbox's SQLite schema, its versions, and the values the outbox hands out.

Version history (``PRAGMA user_version``):

1. ``outbox_meta`` (one row: device id, the next seq), ``sheets`` (one row per
   sheet ever queued; ``body`` NULL once its batch is covered, so a sheet id
   stays known after its contents are gone), ``batches`` (one row per seq ever
   sealed; ``envelope`` NULL once closed), ``sync_states`` (signed sync states
   that covered batches).

A file written by a newer version is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .errors import OutboxSchemaError

__all__ = ["SCHEMA_VERSION", "Coverage", "OutboxStats", "StoredBatch", "migrate"]

SCHEMA_VERSION = 1

_V1 = """
CREATE TABLE outbox_meta (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    device_id     TEXT    NOT NULL,
    next_seq      INTEGER NOT NULL CHECK (next_seq >= 1),
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE sync_states (
    id                 INTEGER PRIMARY KEY,
    raw                BLOB    NOT NULL,
    issued_at_ms       INTEGER NOT NULL,
    highest_contiguous INTEGER NOT NULL,
    applied_at_ms      INTEGER NOT NULL
);
CREATE TABLE batches (
    seq            INTEGER PRIMARY KEY CHECK (seq >= 1),
    state          TEXT    NOT NULL CHECK (state IN ('sealed', 'receipted', 'covered')),
    batch_hash     BLOB    NOT NULL CHECK (length(batch_hash) = 32),
    envelope       BLOB    CHECK ((state = 'sealed') = (envelope IS NOT NULL)),
    size           INTEGER NOT NULL,
    record_count   INTEGER NOT NULL CHECK (record_count >= 1),
    sealed_at_ms   INTEGER NOT NULL,
    receipt        BLOB,
    road           TEXT,
    received_at_ms INTEGER,
    covered_by     INTEGER REFERENCES sync_states (id),
    closed_at_ms   INTEGER,
    CHECK ((state = 'receipted') = (receipt IS NOT NULL))
);
CREATE TABLE sheets (
    id          INTEGER PRIMARY KEY,
    sheet_id    TEXT    NOT NULL UNIQUE,
    body_sha256 BLOB    NOT NULL,
    body        BLOB,
    added_at_ms INTEGER NOT NULL,
    batch_seq   INTEGER REFERENCES batches (seq)
);
CREATE INDEX sheets_by_batch ON sheets (batch_seq, id);
"""

_MIGRATIONS = {1: _V1}


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` inside the caller's transaction; returns the old version."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise OutboxSchemaError("outbox written by a newer version", version=version, known=SCHEMA_VERSION)
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise OutboxSchemaError("file is an SQLite database but not an outbox")
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[step].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {step}")
    return int(version)


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A sealed batch as stored: the exact bytes every road sends."""

    seq: int
    envelope: bytes
    batch_hash: bytes
    record_count: int
    sealed_at_ms: int

    @property
    def size(self) -> int:
        return len(self.envelope)


@dataclass(frozen=True, slots=True)
class Coverage:
    """What one sync state did: seqs closed now, seqs left open because the state predates them."""

    covered: tuple[int, ...]
    held: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OutboxStats:
    device_id: str
    next_seq: int
    sheets_pending: int  # queued, not yet in a batch
    sheets_in_flight: int  # in a sealed batch without receipt or coverage
    sheets_delivered: int  # in a receipted or covered batch (contents deleted)
    batches_sealed: int
    batches_receipted: int
    batches_covered: int
    bytes_sealed: int
    last_received_at_ms: int | None
    highest_contiguous: int  # per the newest applied sync state (0 = none)
