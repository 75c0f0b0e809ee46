"""Census store migration 4: ``sheets`` and ``quarantine`` become ordinary rowid tables in existing stores.

The old store is made with the schema that migration 1 created before it was
edited in place (2026-11-26; copied verbatim below from commit 4574435), and
filled with real rows: batches ingested by a real gateway over loopback into
another store, copied across. Then the real gateway opens it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway._schema_sqlite import MIGRATIONS, ROWID_TABLES
from gateway.store import StoreUnavailable
from gateway.store_sqlite import SqliteStore
from wire import parse_receipt

from .harness import World, post_batch, receipt_bytes, start_gateway

# Migration 1 as commit 4574435 wrote it (sheets, quarantine and nonces WITHOUT ROWID; a batch_hash UNIQUE).
OLD_SCHEMA_V1 = """
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        batch_hash BLOB NOT NULL UNIQUE,
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
    ) WITHOUT ROWID;
    CREATE INDEX sheets_institution ON sheets (institution_code);
    CREATE TABLE quarantine (
        batch_id INTEGER NOT NULL REFERENCES batches (id),
        idx INTEGER NOT NULL,
        reason TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (batch_id, idx)
    ) WITHOUT ROWID;
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
"""
TABLES = ("batches", "sheets", "quarantine", "nonces", "security_events", "registry", "custody")


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def contents(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every census table, in a fixed order (rowids of rowid tables left out)."""
    out = {}
    for table in TABLES:
        cols = [r[1] for r in rows(db, f"PRAGMA table_info({table})")]
        out[table] = rows(db, f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(cols[:2])}")
    return out


def without_rowid(db: Path, table: str) -> bool:
    return rows(db, "SELECT wr FROM pragma_table_list WHERE name = ? AND schema = 'main'", table) == [(1,)]


def layout(db: Path, table: str) -> tuple[Any, ...]:
    """Columns (name, type, not null, default, pk position), indexes (name, unique, columns), references."""
    cols = rows(db, f"PRAGMA table_xinfo({table})")
    idx = sorted(
        (name if not name.startswith("sqlite_autoindex") else "auto", unique,
         tuple(r[2] for r in rows(db, f"PRAGMA index_info({name})")))
        for _, name, unique, *_ in rows(db, f"PRAGMA index_list({table})")
    )
    fks = rows(db, f"PRAGMA foreign_key_list({table})")
    return tuple((c[1], c[2], c[3], c[4], c[5]) for c in cols), tuple(idx), tuple(tuple(f[2:5]) for f in fks)


async def donor_store(world: World, db: Path) -> None:
    """Real rows: batches, sheets, quarantined sheets, nonces and a conflict, through a real gateway."""
    from tablet.generator import generate_sheets

    gw = await start_gateway(world, db)
    try:
        async with aiohttp.ClientSession() as session:
            for device, seq in [("TAB-0001", 1), ("TAB-0001", 2), ("TAB-0002", 1), ("TAB-0003", 1)]:
                sheets = generate_sheets(seq * 10 + int(device[-1]), 4, device_id=device)
                status, _ = await post_batch(session, gw, world.batch(device, seq, sheets), world.tablets[device])
                assert status == 200
            good = generate_sheets(99, 2, device_id="TAB-0001")
            bad = dict(good[1])
            bad["persons"] = "not a list"
            status, answer = await post_batch(
                session, gw, world.batch("TAB-0001", 3, [good[0], bad]), world.tablets["TAB-0001"]
            )
            assert status == 200 and answer["duplicate"] is False
            status, _ = await post_batch(  # another envelope for a stored seq: a security event
                session, gw, world.batch("TAB-0002", 1, generate_sheets(5, 1, device_id="TAB-0002")),
                world.tablets["TAB-0002"],
            )
            assert status == 409
    finally:
        await gw.stop()


def make_old_store(old: Path, donor: Path) -> None:
    with contextlib.closing(sqlite3.connect(old, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(OLD_SCHEMA_V1)
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 1764000000000)")
        conn.execute("ATTACH DATABASE ? AS donor", (str(donor),))
        conn.execute("BEGIN")
        for table in TABLES:
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM donor.{table}")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE donor")


@pytest.fixture
async def old_store(world: World, tmp_path: Path) -> Path:
    donor, old = tmp_path / "donor.db", tmp_path / "old" / "census.db"
    old.parent.mkdir(mode=0o700)
    await donor_store(world, donor)
    make_old_store(old, donor)
    assert all(without_rowid(old, t) for t in ROWID_TABLES)
    assert rows(old, "SELECT count(*) FROM sheets") == [(4 * 4 + 1,)]
    assert rows(old, "SELECT count(*) FROM quarantine") == [(1,)]
    return old


def test_migration_4_is_the_rowid_layout_step() -> None:
    assert 4 in dict(MIGRATIONS) and callable(dict(MIGRATIONS)[4])
    assert ROWID_TABLES == ("sheets", "quarantine")


async def test_an_old_store_with_data_is_migrated_and_keeps_every_row(world: World, old_store: Path,
                                                                      tmp_path: Path) -> None:
    before = contents(old_store)
    fresh = tmp_path / "fresh.db"
    store = SqliteStore(fresh)
    await store.open()
    await store.close()

    store = SqliteStore(old_store)  # the store the gateway opens: migrations run
    await store.open()
    await store.close()
    assert not any(without_rowid(old_store, t) for t in ROWID_TABLES)
    assert without_rowid(old_store, "nonces")  # small rows: stays as it was
    assert contents(old_store) == before
    for table in ROWID_TABLES:
        assert layout(old_store, table) == layout(fresh, table), table
    assert rows(old_store, "PRAGMA integrity_check") == [("ok",)]
    assert rows(old_store, "PRAGMA foreign_key_check") == []
    assert 4 in {v for (v,) in rows(old_store, "SELECT version FROM schema_migrations")}

    gw = await start_gateway(world, old_store)
    try:
        async with aiohttp.ClientSession() as session:
            # a stored batch is still a duplicate with its original receipt; a new one is stored
            first = rows(old_store, "SELECT envelope, receipt FROM batches WHERE device_id = 'TAB-0001' AND seq = 1")
            status, answer = await post_batch(session, gw, first[0][0], world.tablets["TAB-0001"])
            assert status == 200 and answer["duplicate"] is True and receipt_bytes(answer) == first[0][1]
            from tablet.generator import generate_sheets

            envelope = world.batch("TAB-0001", 4, generate_sheets(44, 3, device_id="TAB-0001"))
            status, answer = await post_batch(session, gw, envelope, world.tablets["TAB-0001"])
            assert status == 200 and answer["duplicate"] is False
            assert parse_receipt(receipt_bytes(answer), world.gateway_keys).sheets_accepted == 3
        new_rows = rows(old_store, "SELECT s.idx FROM sheets s JOIN batches b ON b.id = s.batch_id "
                                   "WHERE b.device_id = 'TAB-0001' AND b.seq = 4 ORDER BY s.idx")
        assert new_rows == [(0,), (1,), (2,)]
    finally:
        await gw.stop()

    with contextlib.closing(sqlite3.connect(old_store)) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO sheets (batch_id, idx, body) SELECT batch_id, idx, body FROM sheets LIMIT 1")

    schema = rows(old_store, "SELECT sql FROM sqlite_master ORDER BY name")
    store = SqliteStore(old_store)  # a second start changes nothing
    await store.open()
    await store.close()
    assert rows(old_store, "SELECT sql FROM sqlite_master ORDER BY name") == schema
    assert rows(old_store, "SELECT count(*) FROM schema_migrations WHERE version = 4") == [(1,)]


async def test_a_store_with_the_rowid_layout_is_left_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "census.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    assert not any(without_rowid(db, t) for t in ROWID_TABLES)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 4")
        conn.commit()
    schema = rows(db, "SELECT sql FROM sqlite_master ORDER BY name")
    store = SqliteStore(db)
    await store.open()
    await store.close()
    assert rows(db, "SELECT sql FROM sqlite_master ORDER BY name") == schema
    assert rows(db, "SELECT count(*) FROM schema_migrations WHERE version = 4") == [(1,)]


async def test_a_store_that_cannot_be_rebuilt_is_refused_and_left_unchanged(old_store: Path) -> None:
    with contextlib.closing(sqlite3.connect(old_store, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys=OFF")  # an orphan sheet, as a damaged store could hold
        conn.execute("INSERT INTO sheets (batch_id, idx, body) VALUES (999999, 0, '{}')")
    before = contents(old_store)
    store = SqliteStore(old_store)
    with pytest.raises(StoreUnavailable, match="reference missing rows"):
        await store.open()
    assert all(without_rowid(old_store, t) for t in ROWID_TABLES)
    assert contents(old_store) == before
    assert 4 not in {v for (v,) in rows(old_store, "SELECT version FROM schema_migrations")}


def test_migrate_store_applies_the_migration_offline(old_store: Path, tmp_path: Path) -> None:
    """``sanaq-gateway migrate-store``: the long rebuild of a large store outside the unit's start timeout."""
    import subprocess
    import sys

    before = contents(old_store)
    config = tmp_path / "gateway.toml"
    config.write_text(f'database = "sqlite:///{old_store}"\n[server]\nplain_http = true\n')
    gateway = Path(sys.executable).parent / "sanaq-gateway"
    done = subprocess.run([str(gateway), "migrate-store", "--config", str(config)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "schema is up to date" in done.stderr and "store.sqlite.migrated" in done.stdout
    assert not any(without_rowid(old_store, t) for t in ROWID_TABLES)
    assert contents(old_store) == before
    again = subprocess.run([str(gateway), "migrate-store", "--config", str(config)], capture_output=True, text=True,
                           timeout=120, check=False)
    assert again.returncode == 0 and "store.sqlite.migrated" not in again.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('database = "sqlite:///' + str(tmp_path / "census.db" / "x.db") + '"\n[server]\nplain_http = true\n')
    (tmp_path / "census.db").write_text("a file where a directory should be")
    failed = subprocess.run([str(gateway), "migrate-store", "--config", str(bad)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert failed.returncode == 1 and "cannot migrate the store" in failed.stderr


async def test_views_and_triggers_on_the_tables_survive_the_rebuild(old_store: Path) -> None:
    """Steps of other features may add a view or a trigger on sheets; the rebuild keeps both working."""
    with contextlib.closing(sqlite3.connect(old_store, isolation_level=None)) as conn:
        conn.execute("CREATE VIEW sheets_per_batch AS SELECT batch_id, count(*) AS n FROM sheets GROUP BY batch_id")
        conn.execute("CREATE TRIGGER sheets_keep BEFORE DELETE ON sheets BEGIN SELECT RAISE(ABORT, 'kept'); END")
    counted = rows(old_store, "SELECT * FROM sheets_per_batch ORDER BY batch_id")
    store = SqliteStore(old_store)
    await store.open()
    await store.close()
    assert not without_rowid(old_store, "sheets")
    assert rows(old_store, "SELECT * FROM sheets_per_batch ORDER BY batch_id") == counted
    with contextlib.closing(sqlite3.connect(old_store)) as conn, pytest.raises(sqlite3.IntegrityError, match="kept"):
        conn.execute("DELETE FROM sheets")
    assert rows(old_store, "PRAGMA legacy_alter_table") == [(0,)]
