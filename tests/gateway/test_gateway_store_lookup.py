"""The SQLite store's idempotency lookup on the event-loop thread (docs/adr/0014-memory-and-tail.md).

``find_batch`` runs on a read-only connection of the event loop's own, not on
the read pool: it must see every batch as soon as its commit was answered,
never write, and, when a statement on that connection fails (busy or
broken), fall back to the pool instead of failing the request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store import Stored
from gateway.store_sqlite import SqliteStore

from .test_gateway_store_contract import item


async def test_a_batch_is_found_on_the_loop_as_soon_as_its_commit_is_answered(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "census.db")
    await store.open()
    try:
        for seq in range(1, 41):
            stored = item("T-LOOKUP", seq)
            assert isinstance(await store.ingest(stored), Stored)
            found = await store.find_batch("T-LOOKUP", seq)
            assert found is not None and found.batch_hash == stored.batch_hash and found.receipt == stored.receipt
        assert await store.find_batch("T-LOOKUP", 41) is None
        conn = store._lookup_conn
        assert conn is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM batches")
        assert (await store.find_batch("T-LOOKUP", 1)) is not None
    finally:
        await store.close()


async def test_a_failing_lookup_connection_falls_back_to_the_pool(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "census.db")
    await store.open()
    try:
        stored = item("T-BUSY", 1)
        assert isinstance(await store.ingest(stored), Stored)
        conn = store._lookup_conn
        assert conn is not None
        conn.close()  # every statement on it now fails, as a busy or broken connection's would
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
        found = await store.find_batch("T-BUSY", 1)
        assert found is not None and found.batch_hash == stored.batch_hash
        assert await store.find_batch("T-BUSY", 2) is None
    finally:
        await store.close()
