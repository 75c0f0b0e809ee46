"""One census-store contract, run against both engines: SQLite (a file in tmp_path) and PostgreSQL
(a fresh database in the session's throwaway cluster). Two store objects on one database stand for
two gateway instances. Engine-specific refusals and failures are at the end."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway._schema_postgres import check_durable, split_pool_params
from gateway.store import (
    Conflict,
    CustodyItem,
    Duplicate,
    IngestItem,
    NonceUse,
    QuarantinedSheet,
    ReplayError,
    SecurityEvent,
    Stored,
    StoredSheet,
    StoreError,
    StoreUnavailable,
)
from gateway.store_postgres import NotDurableError, PostgresStore, migrate
from gateway.store_sqlite import SqliteStore
from gateway.store_sqlite import check_durable as sqlite_check_durable
from wire.errors import RollbackError

from .pg_cluster import Cluster, create_database, drop_database, pg_cluster  # noqa: F401 - fixture

KEY = b"K" * 16
FAR = 10**13  # a nonce expiry far in the future (ms)


@dataclass
class Engine:
    name: str
    target: str  # SQLite file path or PostgreSQL URL
    cluster: Cluster | None = None
    dbname: str = ""

    def store(self, **kw: Any) -> Any:
        return SqliteStore(Path(self.target), **kw) if self.name == "sqlite" else PostgresStore(self.target, **kw)

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(self.target)) as conn:
                return [tuple(r) for r in conn.execute(query).fetchall()]
        async with await psycopg.AsyncConnection.connect(self.target) as conn:
            cur = await conn.execute(query)
            return [tuple(r) for r in await cur.fetchall()]


@contextlib.asynccontextmanager
async def fresh_database(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = await create_database(cluster)
    try:
        yield Engine("postgres", cluster.dsn(name), cluster, name)
    finally:
        await drop_database(cluster, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    if request.param == "sqlite":
        yield Engine("sqlite", str(tmp_path / "census.db"))
        return
    async with fresh_database(request) as pg_engine:
        yield pg_engine


@pytest.fixture
async def pg_engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with fresh_database(request) as pg_engine:
        yield pg_engine


@contextlib.asynccontextmanager
async def opened(engine: Engine, **kw: Any) -> AsyncIterator[Any]:
    store = engine.store(**kw)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def item(
    device_id: str,
    seq: int,
    *,
    body: bytes | None = None,
    nonce: str | None = None,
    received_at_ms: int = 1_700_000_000_000,
    sheets: int = 2,
) -> IngestItem:
    envelope = body if body is not None else os.urandom(64)
    return IngestItem(
        device_id=device_id,
        seq=seq,
        batch_hash=hashlib.sha256(envelope).digest(),
        envelope=envelope,
        sealed_at_ms=received_at_ms - 5000,
        request_created_s=received_at_ms // 1000,
        received_at_ms=received_at_ms,
        road="online",
        signer_key_id=KEY,
        schema="census-sheet/1",
        receipt=b"receipt:" + os.urandom(16),  # every gateway's receipt differs (time, signature)
        sheets=tuple(StoredSheet(i, f"S{i}", "AB-000001", None, json.dumps({"i": i})) for i in range(sheets)),
        quarantined=(QuarantinedSheet(sheets, "persons: not a list", '{"persons": 1}'),),
        nonce=NonceUse(KEY, nonce or os.urandom(12).hex(), FAR),
    )


# ---- storage, idempotency, conflicts ------------------------------------------------------------


async def test_stored_then_duplicate_then_conflict(engine: Engine) -> None:
    first = item("TAB-0001", 1)
    async with opened(engine) as store:
        assert await store.ingest(first) == Stored(first.receipt)
        again = item("TAB-0001", 1, body=first.envelope)
        assert await store.ingest(again) == Duplicate(first.receipt)
        other = item("TAB-0001", 1)
        assert await store.ingest(other) == Conflict(first.batch_hash)
        record = await store.find_batch("TAB-0001", 1)
        assert record is not None
        assert (record.batch_hash, record.receipt, record.road) == (first.batch_hash, first.receipt, "online")
        assert await store.find_batch("TAB-0001", 2) is None
        counts = await store.counts()
    assert (counts["batches"], counts["sheets"], counts["quarantine"], counts["nonces"]) == (1, 2, 1, 3)
    assert await engine.rows("SELECT envelope, receipt FROM batches") == [(first.envelope, first.receipt)]


async def test_ingest_with_a_used_nonce_is_a_replay_and_stores_nothing(engine: Engine) -> None:
    async with opened(engine) as store:
        await store.ingest(item("TAB-0001", 1, nonce="n-1"))
        with pytest.raises(ReplayError):
            await store.ingest(item("TAB-0001", 2, nonce="n-1"))
        with pytest.raises(ReplayError):
            await store.use_nonce(NonceUse(KEY, "n-1", FAR))
        assert await store.find_batch("TAB-0001", 2) is None
        assert (await store.counts())["sheets"] == 2
        await store.use_nonce(NonceUse(b"L" * 16, "n-1", FAR))  # the pair is what is unique


async def test_replay_is_refused_across_two_instances(engine: Engine) -> None:
    async with opened(engine) as gw1, opened(engine) as gw2:
        await gw1.use_nonce(NonceUse(KEY, "seen-by-gw1", FAR))
        with pytest.raises(ReplayError):
            await gw2.use_nonce(NonceUse(KEY, "seen-by-gw1", FAR))
        await gw2.ingest(item("TAB-0001", 1, nonce="seen-by-gw2"))
        with pytest.raises(ReplayError):
            await gw1.ingest(item("TAB-0001", 2, nonce="seen-by-gw2"))


async def test_one_nonce_raced_on_two_instances_is_accepted_once(engine: Engine) -> None:
    async with opened(engine, max_wait_ms=0) as gw1, opened(engine, max_wait_ms=0) as gw2:
        nonces = [NonceUse(KEY, f"race-{i}", FAR) for i in range(12)]
        results = await asyncio.gather(*(s.use_nonce(n) for n in nonces for s in (gw1, gw2)), return_exceptions=True)
    for pair in zip(results[::2], results[1::2], strict=True):
        assert sorted(type(r).__name__ for r in pair) == ["NoneType", "ReplayError"]


@pytest.mark.parametrize("same_bytes", [True, False], ids=["same-bytes", "other-bytes"])
async def test_same_device_seq_raced_on_two_instances_stores_one_row(engine: Engine, same_bytes: bool) -> None:
    rounds = 12
    pairs = []
    for seq in range(1, rounds + 1):
        a = item("TAB-0007", seq)
        b = item("TAB-0007", seq, body=a.envelope if same_bytes else None)
        pairs.append((a, b))
    async with opened(engine, max_wait_ms=0) as gw1, opened(engine, max_wait_ms=0) as gw2:
        outcomes = await asyncio.gather(*(asyncio.gather(gw1.ingest(a), gw2.ingest(b)) for a, b in pairs))
    stored = {seq: (h, r) for seq, h, r in await engine.rows("SELECT seq, batch_hash, receipt FROM batches")}
    assert len(stored) == rounds
    assert await engine.rows("SELECT count(*) FROM batches") == [(rounds,)]
    for (a, b), (out_a, out_b) in zip(pairs, outcomes, strict=True):
        winner, loser = (out_a, out_b) if isinstance(out_a, Stored) else (out_b, out_a)
        assert isinstance(winner, Stored)
        held_hash, held_receipt = stored[a.seq]
        assert winner.receipt == held_receipt
        if same_bytes:
            assert loser == Duplicate(held_receipt)
        else:
            assert loser == Conflict(held_hash)
            assert held_hash in (a.batch_hash, b.batch_hash)
    assert await engine.rows("SELECT count(*) FROM sheets") == [(rounds * 2,)]


# ---- group commit ---------------------------------------------------------------------------


async def test_concurrent_writes_are_committed_in_groups(engine: Engine) -> None:
    n = 60
    async with opened(engine, max_group=256, max_wait_ms=50) as store:
        outcomes = await asyncio.gather(*(store.ingest(item(f"TAB-{i % 5:04d}", i)) for i in range(n)))
        sizes = list(store.group_sizes)
    assert all(isinstance(o, Stored) for o in outcomes)
    assert sum(sizes) == n
    assert len(sizes) < n and max(sizes) > 1
    assert await engine.rows("SELECT count(*) FROM batches") == [(n,)]


async def test_a_failed_rule_rolls_back_only_its_own_job_in_the_group(engine: Engine) -> None:
    held = item("TAB-0001", 1, nonce="used")
    async with opened(engine) as store:
        await store.ingest(held)
    async with opened(engine, max_group=9, max_wait_ms=1000) as store:
        fresh = [item("TAB-0002", seq) for seq in range(1, 5)]
        replayed = item("TAB-0003", 1, nonce="used")
        conflicting = item("TAB-0001", 1)
        duplicate = item("TAB-0001", 1, body=held.envelope)
        results = await asyncio.gather(
            *(store.ingest(f) for f in fresh),
            store.ingest(replayed),
            store.ingest(conflicting),
            store.ingest(duplicate),
            store.use_nonce(NonceUse(KEY, "used", FAR)),
            store.use_nonce(NonceUse(KEY, "fresh", FAR)),
            return_exceptions=True,
        )
        assert store.group_sizes[-1] == 9  # all nine went through one transaction
    assert results[:4] == [Stored(f.receipt) for f in fresh]
    assert isinstance(results[4], ReplayError)
    assert results[5] == Conflict(held.batch_hash)
    assert results[6] == Duplicate(held.receipt)
    assert isinstance(results[7], ReplayError)
    assert results[8] is None
    assert sorted(await engine.rows("SELECT device_id, seq FROM batches")) == [
        ("TAB-0001", 1),
        *[("TAB-0002", s) for s in range(1, 5)],
    ]
    assert await engine.rows("SELECT count(*) FROM sheets") == [(10,)]


# ---- registry, events, custody, sync state, nonces ------------------------------------------------


async def test_registry_version_only_grows_across_instances(engine: Engine) -> None:
    async with opened(engine) as gw1, opened(engine) as gw2:
        assert await gw1.current_snapshot() is None
        await gw1.save_snapshot(2, b"snapshot-2")
        with pytest.raises(RollbackError):
            await gw1.save_snapshot(1, b"snapshot-1")
        await gw2.save_snapshot(2, b"snapshot-2")  # the same version again: both instances load it at start
        await gw2.save_snapshot(5, b"snapshot-5")
        with pytest.raises(RollbackError):
            await gw1.save_snapshot(3, b"snapshot-3")
        assert await gw1.current_snapshot() == b"snapshot-5"
    assert await engine.rows("SELECT version FROM registry") == [(5,)]


async def test_snapshot_version_is_the_stored_one_for_every_instance(engine: Engine) -> None:
    async with opened(engine) as gw1, opened(engine) as gw2:
        assert await gw2.snapshot_version() is None
        await gw1.save_snapshot(3, b"snapshot-3")
        assert await gw2.snapshot_version() == 3
        with pytest.raises(RollbackError):
            await gw2.save_snapshot(2, b"snapshot-2")
        assert (await gw1.snapshot_version(), await gw2.snapshot_version()) == (3, 3)


async def test_security_events_are_recorded(engine: Engine) -> None:
    async with opened(engine) as store:
        await store.record_security_event(
            SecurityEvent(at_ms=10, kind="seq-conflict", device_id="TAB-0001", seq=3, detail={"road": "online"})
        )
        await store.record_security_event(SecurityEvent(at_ms=11, kind="revoked-signer", key_id="ab" * 16))
        assert (await store.counts())["security_events"] == 2
    rows = await engine.rows("SELECT at_ms, kind, device_id, seq, key_id, detail FROM security_events ORDER BY at_ms")
    assert rows == [
        (10, "seq-conflict", "TAB-0001", 3, None, '{"road": "online"}'),
        (11, "revoked-signer", None, None, "ab" * 16, "{}"),
    ]


async def test_custody_is_idempotent_by_record_hash_and_nonce_checked(engine: Engine) -> None:
    def custody(record: bytes, nonce: str) -> CustodyItem:
        return CustodyItem("ST-01", "TAB-0001", 100, 200, record, 3, NonceUse(KEY, nonce, FAR))

    async with opened(engine) as gw1, opened(engine) as gw2:
        await gw1.add_custody(custody(b"record-1", "c1"))
        await gw2.add_custody(custody(b"record-1", "c2"))
        with pytest.raises(ReplayError):
            await gw2.add_custody(custody(b"record-2", "c1"))
        await gw1.add_custody(custody(b"record-2", "c3"))
    assert sorted(await engine.rows("SELECT record, batch_count FROM custody")) == [(b"record-1", 3), (b"record-2", 3)]


async def test_device_seqs_lists_stored_seqs_in_order(engine: Engine) -> None:
    async with opened(engine) as store:
        for seq, at in ((4, 1000), (1, 3000), (2, 2000)):
            await store.ingest(item("TAB-0001", seq, received_at_ms=at))
        await store.ingest(item("TAB-0002", 9, received_at_ms=9000))
        state = await store.device_seqs("TAB-0001")
        assert (state.device_id, state.seqs, state.last_sync_ms) == ("TAB-0001", (1, 2, 4), 3000)
        empty = await store.device_seqs("TAB-0404")
        assert (empty.seqs, empty.last_sync_ms) == ((), None)


async def test_purge_removes_only_expired_nonces(engine: Engine) -> None:
    async with opened(engine) as store:
        for name, expires in (("a", 100), ("b", 200), ("c", 300)):
            await store.use_nonce(NonceUse(KEY, name, expires))
        assert await store.purge_nonces(250) == 2
        assert await store.purge_nonces(250) == 0
        await store.use_nonce(NonceUse(KEY, "a", 1000))  # expired ones may come back (their window has passed)
        with pytest.raises(ReplayError):
            await store.use_nonce(NonceUse(KEY, "c", 1000))
        assert (await store.counts())["nonces"] == 2


async def test_closed_store_refuses_work(engine: Engine) -> None:
    store = engine.store()
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ingest(item("TAB-0001", 1))


# ---- refusal to run without durable commits ----------------------------------------------------


@pytest.mark.parametrize(("journal", "sync"), [("wal", "NORMAL"), ("wal", "OFF"), ("delete", "FULL")])
def test_sqlite_not_durable_is_refused(tmp_path: Path, journal: str, sync: str) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "x.db")) as conn:
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.execute(f"PRAGMA synchronous={sync}")
        with pytest.raises(NotDurableError):
            sqlite_check_durable(conn)


@pytest.mark.parametrize(
    ("fsync", "synchronous_commit", "durable"),
    [
        ("on", "on", True),
        ("on", "remote_apply", True),
        ("on", "remote_write", True),
        ("on", "local", True),
        ("on", "off", False),
        ("off", "on", False),
        ("off", "off", False),
    ],
)
def test_postgres_durability_rule(fsync: str, synchronous_commit: str, durable: bool) -> None:
    if durable:
        check_durable(fsync, synchronous_commit)
    else:
        with pytest.raises(NotDurableError):
            check_durable(fsync, synchronous_commit)


@pytest.mark.postgres
@pytest.mark.parametrize(("setting", "refused"), [("off", True), ("local", False), ("remote_write", False)])
async def test_postgres_database_set_to_lose_commits_is_refused(
    request: pytest.FixtureRequest, setting: str, refused: bool
) -> None:
    async with fresh_database(request) as pg_engine:
        assert pg_engine.cluster is not None
        async with await psycopg.AsyncConnection.connect(pg_engine.cluster.dsn(), autocommit=True) as admin:
            await admin.execute(f"ALTER DATABASE {pg_engine.dbname} SET synchronous_commit = {setting}")
        store = PostgresStore(pg_engine.target)
        if refused:
            with pytest.raises(NotDurableError, match="synchronous_commit=off"):
                await store.open()
            with pytest.raises(StoreUnavailable):
                await store.ingest(item("TAB-0001", 1))
        else:
            await store.open()
            assert isinstance(await store.ingest(item("TAB-0001", 1)), Stored)
        await store.close()


# ---- PostgreSQL engine failures, migrations, roles ---------------------------------------------

pg = pytest.mark.postgres


async def _terminate_backends(admin_dsn: str, dbname: str) -> int:
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


@pg
async def test_postgres_connections_lost_before_commit_are_replaced_transparently(pg_engine: Engine) -> None:
    assert pg_engine.cluster is not None
    admin = pg_engine.cluster.dsn()
    async with opened(pg_engine, pool_min_size=3) as store:
        await store.ingest(item("TAB-0001", 1))
        assert await _terminate_backends(admin, pg_engine.dbname) >= 3  # a server restart, as the pool sees it
        assert isinstance(await store.ingest(item("TAB-0001", 2)), Stored)
        assert await store.find_batch("TAB-0001", 2) is not None
        assert await _terminate_backends(admin, pg_engine.dbname) >= 1
        assert (await store.device_seqs("TAB-0001")).seqs == (1, 2)


@pg
async def test_postgres_unreachable_database_fails_the_group_and_stores_nothing(pg_engine: Engine) -> None:
    assert pg_engine.cluster is not None
    admin_dsn, name = pg_engine.cluster.dsn(), pg_engine.dbname
    async with (
        await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin,
        opened(pg_engine, pool_timeout_s=0.5) as store,
    ):
        await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        try:
            await _terminate_backends(admin_dsn, name)
            results = await asyncio.gather(
                *(store.ingest(item("TAB-0001", seq)) for seq in range(1, 6)), return_exceptions=True
            )
            assert all(isinstance(r, StoreUnavailable) for r in results), results
            with pytest.raises(StoreUnavailable):
                await store.find_batch("TAB-0001", 1)
        finally:
            await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    async with opened(pg_engine) as fresh:
        assert (await fresh.counts())["batches"] == 0
        assert (await fresh.counts())["nonces"] == 0


@pg
async def test_postgres_connection_that_became_non_durable_is_never_used(pg_engine: Engine) -> None:
    assert pg_engine.cluster is not None
    admin_dsn, name = pg_engine.cluster.dsn(), pg_engine.dbname
    async with opened(pg_engine, pool_timeout_s=0.5) as store:
        await store.ingest(item("TAB-0001", 1))
        async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
            await admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        await _terminate_backends(admin_dsn, name)  # the pool must connect again, and sees the new setting
        with pytest.raises(StoreUnavailable):
            await store.ingest(item("TAB-0001", 2))
    assert await pg_engine.rows("SELECT seq FROM batches") == [(1,)]


@pg
async def test_postgres_bad_values_fail_only_their_own_job(pg_engine: Engine) -> None:
    async with opened(pg_engine, max_group=3, max_wait_ms=1000) as store:
        good = [item("TAB-0001", 1), item("TAB-0001", 2)]
        results = await asyncio.gather(
            store.ingest(good[0]), store.ingest(item("TAB-0001", 2**63)), store.ingest(good[1]), return_exceptions=True
        )
        assert store.group_sizes[-1] == 3
    assert results[0] == Stored(good[0].receipt) and results[2] == Stored(good[1].receipt)
    assert isinstance(results[1], StoreError) and not isinstance(results[1], StoreUnavailable)


@pg
async def test_postgres_instances_starting_together_migrate_once(pg_engine: Engine) -> None:
    stores = [pg_engine.store() for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))
    assert await pg_engine.rows("SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,), (5,)]
    assert await migrate(pg_engine.target) == []


def test_pool_options_are_taken_out_of_the_url() -> None:
    url = "postgresql://gw@/census?host=%2Frun%2Fpostgresql&pool_max_size=16&sslmode=disable&pool_timeout_s=2.5"
    conninfo, options = split_pool_params(url)
    assert options == {"pool_max_size": 16.0, "pool_timeout_s": 2.5}
    assert conninfo == "postgresql://gw@/census?host=%2Frun%2Fpostgresql&sslmode=disable"
    assert split_pool_params("dbname=census host=/run/postgresql") == ("dbname=census host=/run/postgresql", {})


@pg
async def test_postgres_least_privilege_roles_as_documented(request: pytest.FixtureRequest) -> None:
    """The recipe of docs/operations.md: an owner role migrates, the gateway role may only add rows."""
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    suffix = os.urandom(4).hex()
    owner, app, db = f"own_{suffix}", f"gw_{suffix}", f"lp_{suffix}"
    async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {owner} LOGIN")
        await admin.execute(f"CREATE ROLE {app} LOGIN")
        await admin.execute(f"CREATE DATABASE {db} OWNER {owner}")
        try:
            async with await psycopg.AsyncConnection.connect(cluster.dsn(db), autocommit=True) as setup:
                for statement in (
                    f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                    f"GRANT CONNECT ON DATABASE {db} TO {app}",
                    f"CREATE SCHEMA census AUTHORIZATION {owner}",
                    f"GRANT USAGE ON SCHEMA census TO {app}",
                    f"ALTER ROLE {owner} IN DATABASE {db} SET search_path = census",
                    f"ALTER ROLE {app} IN DATABASE {db} SET search_path = census",
                ):
                    await setup.execute(statement)
            with pytest.raises(StoreUnavailable, match="migrate"):  # the gateway role cannot create the schema
                await PostgresStore(cluster.dsn(db, user=app)).open()
            assert await migrate(cluster.dsn(db, user=owner), grant_to=app) == [1, 2, 5]
            async with opened(Engine("postgres", cluster.dsn(db, user=app))) as store:
                stored = item("TAB-0001", 1)
                assert await store.ingest(stored) == Stored(stored.receipt)
                await store.save_snapshot(1, b"s1")
                await store.save_snapshot(2, b"s2")
                await store.record_security_event(SecurityEvent(at_ms=1, kind="k"))
                await store.add_custody(CustodyItem("ST-01", "TAB-0001", 1, 2, b"r", 1, NonceUse(KEY, "cu", 5)))
                assert await store.purge_nonces(FAR + 1) == 2
                assert (await store.counts())["batches"] == 1
            async with await psycopg.AsyncConnection.connect(cluster.dsn(db, user=app), autocommit=True) as gw:
                cur = await gw.execute("SELECT schemaname FROM pg_tables WHERE tablename = 'batches'")
                assert await cur.fetchall() == [("census",)]
                for forbidden in (
                    "UPDATE batches SET receipt = 'x'",
                    "DELETE FROM batches",
                    "DELETE FROM sheets",
                    "UPDATE quarantine SET reason = 'x'",
                    "DELETE FROM security_events",
                    "DELETE FROM custody",
                    "TRUNCATE nonces",
                    "DROP TABLE custody",
                    "CREATE TABLE extra (x int)",
                    "DELETE FROM schema_migrations",
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        await gw.execute(forbidden)
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            await admin.execute(f"DROP ROLE IF EXISTS {app}")
            await admin.execute(f"DROP ROLE IF EXISTS {owner}")


@pg
async def test_postgres_registry_saves_notify_every_listening_instance(pg_engine: Engine) -> None:
    """A save by one instance wakes ``watch_registry`` of another; a refused save sends nothing; and the
    watch survives its connection being killed (it reconnects and reports a possible miss at once)."""
    assert pg_engine.cluster is not None
    async with opened(pg_engine) as writer, opened(pg_engine) as follower:
        woken = asyncio.Event()
        wakes: list[int] = []

        def changed() -> None:
            wakes.append(1)
            woken.set()

        watch = asyncio.create_task(follower.watch_registry(changed))
        try:
            async with asyncio.timeout(10):
                await woken.wait()  # listening (a first call on every (re)connect)
            woken.clear()
            await writer.save_snapshot(2, b"snapshot-2")
            async with asyncio.timeout(10):
                await woken.wait()
            woken.clear()
            before = len(wakes)
            with pytest.raises(RollbackError):
                await writer.save_snapshot(1, b"snapshot-1")
            await writer.save_snapshot(3, b"snapshot-3")  # the refused save above sent nothing; this one does
            async with asyncio.timeout(10):
                await woken.wait()
            assert len(wakes) == before + 1
            woken.clear()
            async with await psycopg.AsyncConnection.connect(pg_engine.cluster.dsn(), autocommit=True) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = 'sanaq-gateway-registry'",
                    (pg_engine.dbname,),
                )
            async with asyncio.timeout(10):
                await woken.wait()  # reconnected
            woken.clear()
            await writer.save_snapshot(4, b"snapshot-4")
            async with asyncio.timeout(10):
                await woken.wait()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
