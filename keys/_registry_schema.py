"""The registry's SQL schema as ordered migrations; ``schema_migrations`` records which ran.

Append new migrations; never edit one that has shipped. Keys and key ids are
stored as lowercase hex text so the database reads well in ``sqlite3``.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1 = (
    """CREATE TABLE tablets (
        device_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL UNIQUE,
        key_id TEXT NOT NULL UNIQUE,
        usb_serial TEXT NOT NULL,
        institution TEXT NOT NULL,
        worker_id TEXT NOT NULL,
        worker_name TEXT,
        act_no TEXT,
        issued_at_ms INTEGER NOT NULL,
        returned_at_ms INTEGER,
        status TEXT NOT NULL CHECK (status IN ('issued', 'returned', 'lost', 'revoked')),
        status_changed_at_ms INTEGER NOT NULL,
        reason TEXT
    ) STRICT""",
    """CREATE TABLE stations (
        station_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL UNIQUE,
        key_id TEXT NOT NULL UNIQUE,
        location TEXT,
        enrolled_at_ms INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        status_changed_at_ms INTEGER NOT NULL,
        reason TEXT
    ) STRICT""",
    """CREATE TABLE snapshot_versions (
        version INTEGER PRIMARY KEY CHECK (version >= 1),
        published_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    ) STRICT""",
    """CREATE TABLE status_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_id TEXT NOT NULL,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('tablet', 'station')),
        from_status TEXT,
        to_status TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        reason TEXT,
        evidence BLOB
    ) STRICT""",
    "CREATE INDEX status_events_subject ON status_events (subject_id, id)",
)

# A station row with role 'web' is a self-enumeration web service: snapshots list it under
# ``web_services`` and the gateway names its road ``web:<id>``.
_V2 = (
    "ALTER TABLE stations ADD COLUMN role TEXT NOT NULL DEFAULT 'usb' CHECK (role IN ('usb', 'web'))",
)

# Certificate keys sign participation certificates (docs/protocol.md 7.4). 'retired' = replaced by a
# rotation (its certificates stay valid); 'revoked' = withdrawn (listed in snapshots, its certificates refused).
_V3 = (
    """CREATE TABLE certificate_keys (
        key_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL UNIQUE,
        issuer TEXT NOT NULL,
        census TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
        status_changed_at_ms INTEGER NOT NULL,
        reason TEXT
    ) STRICT""",
    "CREATE INDEX certificate_keys_issuer ON certificate_keys (issuer, status)",
)

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("initial", _V1), ("station-role", _V2), ("certificate-keys", _V3),
)
