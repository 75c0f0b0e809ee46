"""Versioned schema migrations of the SQLite census store. Append, never edit, a step."""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: tuple[tuple[int, str], ...] = (
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
)
