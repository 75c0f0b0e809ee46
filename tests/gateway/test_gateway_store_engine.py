"""The two census-store engines share one group committer and one definition of every rule
(gateway.store_commit and gateway.store_rules, ADR 0002): the same ingest-rule cases run on SQLite
and PostgreSQL and must execute the very same statements with the same outcomes; the engine modules
define no rule of their own; SQLite's write lock held by another process is waited for, retried,
and never answered early."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import gateway.store_postgres
import gateway.store_sqlite
from gateway import store_rules
from gateway.person_key import person_key
from gateway.store import (
    CensusStore,
    Conflict,
    Duplicate,
    IngestItem,
    NonceUse,
    Stored,
    StoredSheet,
    StoreError,
    StoreUnavailable,
)
from gateway.store_commit import Sql
from gateway.store_postgres import PostgresStore
from gateway.store_rules import SharedStore
from gateway.store_sqlite import SqliteStore
from wire.errors import RollbackError

from .harness import until
from .pg_cluster import pg_cluster  # noqa: F401 - fixture
from .test_gateway_persons import CODE, sheet_body
from .test_gateway_store_contract import FAR, KEY, Engine, engine, fresh_database, item, opened  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
ENGINE_MODULES = (ROOT / "gateway" / "store_sqlite.py", ROOT / "gateway" / "store_postgres.py")


def institution_batch(
    device_id: str, seq: int, entries: list[tuple[str, str]], *, envelope: bytes, nonce: str
) -> IngestItem:
    """A batch of institution sheets, one per (entry, surname); fixed bytes so both engines get the same."""
    sheets = []
    for i, (entry, surname) in enumerate(entries):
        body = sheet_body(entry, surname=surname)
        sheets.append(StoredSheet(i, f"S{seq}-{i}", CODE, entry, repr(body), person_key(body), "interview", "KZ-71"))
    return IngestItem(
        device_id=device_id,
        seq=seq,
        batch_hash=hashlib.sha256(envelope).digest(),
        envelope=envelope,
        sealed_at_ms=1_700_000_000_000,
        request_created_s=1_700_000_000,
        received_at_ms=1_700_000_000_000 + seq,
        road="online",
        signer_key_id=KEY,
        schema="census-sheet/1",
        receipt=b"receipt-" + envelope,
        sheets=tuple(sheets),
        quarantined=(),
        nonce=NonceUse(KEY, nonce, FAR),
    )


def cases() -> list[tuple[str, Callable[[Any], Awaitable[Any]]]]:
    """The ingest rules one by one, in an order where each case finds what the earlier ones stored."""
    first = institution_batch(
        "TAB-0001", 1, [(f"{CODE}/00001", "Серікова"), (f"{CODE}/00002", "Бек")], envelope=b"A", nonce="n1"
    )
    later = institution_batch(
        "TAB-0002", 1, [(f"{CODE}/00001", "Ахметов"), (f"{CODE}/00009", "Бек")], envelope=b"B", nonce="n2"
    )
    again = institution_batch("TAB-0001", 1, [], envelope=b"A", nonce="n3")
    other_bytes = institution_batch("TAB-0001", 1, [], envelope=b"other", nonce="n4")
    replayed = institution_batch("TAB-0003", 1, [], envelope=b"C", nonce="n1")
    hash_elsewhere = institution_batch("TAB-0001", 2, [], envelope=b"A", nonce="n5")
    return [
        ("stored", lambda s: s.ingest(first)),
        ("duplicate", lambda s: s.ingest(again)),
        ("conflict", lambda s: s.ingest(other_bytes)),
        ("replay", lambda s: s.ingest(replayed)),
        ("same-entry and possible-duplicate cases", lambda s: s.ingest(later)),
        ("nonce used", lambda s: s.use_nonce(first.nonce)),
        ("snapshot saved", lambda s: s.save_snapshot(2, b"snapshot-2")),
        ("snapshot rolled back", lambda s: s.save_snapshot(1, b"snapshot-1")),
        ("same version, other bytes", lambda s: s.save_snapshot(2, b"snapshot-x")),
        ("find", lambda s: s.find_batch("TAB-0001", 1)),
        ("seqs", lambda s: s.device_seqs("TAB-0001")),
        ("persons", lambda s: s.institution_persons(CODE)),
        ("counts", lambda s: s.counts()),
        ("purge", lambda s: s.purge_nonces(FAR + 1)),
        ("hash under another seq", lambda s: s.ingest(hash_elsewhere)),  # last: the schemas differ (below)
    ]


@contextlib.contextmanager
def recorded(module: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement the engine module executes, as the shared code wrote it."""
    texts: list[str] = []
    run = module._run

    def recording(conn: Any, sql: Sql) -> Any:
        texts.append(sql.text)
        return run(conn, sql)

    monkeypatch.setattr(module, "_run", recording)
    yield texts
    monkeypatch.setattr(module, "_run", run)


# a write job on SQLite (one writer), autocommit on PostgreSQL
_RULE_ONLY = ("purge",)
_FRAMING = re.compile(r"^(<begin>|COMMIT|SAVEPOINT |RELEASE |ROLLBACK TO )")


def outcome(value: Any) -> Any:
    if isinstance(value, BaseException):
        return type(value).__name__, str(value)
    if isinstance(value, list):  # PersonRecord: the batch a person counts from
        return [(p.entry_id, p.road, p.device_id, p.source, p.more_sheets) for p in value]
    return value


async def run_cases(store: Any, texts: list[str]) -> list[tuple[str, Any, list[str]]]:
    trace = []
    for name, case in cases():
        texts.clear()
        try:
            value = outcome(await case(store))
        except (StoreError, RollbackError) as e:
            value = outcome(e)
        dialect = type(store).DIALECT
        statements = ["<begin>" if t == dialect.begin else t for t in texts if t != dialect.notify_registry]
        if name in _RULE_ONLY:
            statements = [t for t in statements if not _FRAMING.match(t)]
        trace.append((name, value, statements))
    return trace


@pytest.mark.postgres
async def test_both_engines_run_the_same_statements_with_the_same_outcomes(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traces = []
    async with fresh_database(request) as pg:
        for module, make in (
            (gateway.store_sqlite, lambda: SqliteStore(tmp_path / "census.db", max_wait_ms=0)),
            (gateway.store_postgres, lambda: PostgresStore(pg.target, max_wait_ms=0)),
        ):
            store = make()
            await store.open()
            try:
                with recorded(module, monkeypatch) as texts:
                    traces.append(await run_cases(store, texts))
            finally:
                await store.close()
    sqlite_trace, postgres_trace = traces
    for on_sqlite, on_postgres in zip(sqlite_trace, postgres_trace, strict=True):
        if on_sqlite[0] != "hash under another seq":  # the schemas differ there (below)
            assert on_sqlite == on_postgres, on_sqlite[0]
    shared_sql = {t for _, _, statements in sqlite_trace for t in statements}
    assert not [t for t in shared_sql if "%" in t]  # "?" is the only placeholder PostgreSQL's adapter rewrites
    by_case = {name: (value, statements) for name, value, statements in sqlite_trace}
    assert by_case["duplicate"][0] == Duplicate(b"receipt-A")
    assert by_case["conflict"][0] == Conflict(hashlib.sha256(b"A").digest())
    assert by_case["replay"][0] == ("ReplayError", "nonce already used")
    # only PostgreSQL's schema has UNIQUE (batch_hash): the one rule stores such a batch on SQLite
    assert isinstance(by_case["hash under another seq"][0], Stored)
    on_postgres = {name: value for name, value, _ in postgres_trace}["hash under another seq"]
    assert on_postgres == ("StoreError", "batch hash already stored under another device and seq")
    assert by_case["snapshot rolled back"][0][0] == by_case["same version, other bytes"][0][0] == "RollbackError"
    cases_opened = [s for s in by_case["same-entry and possible-duplicate cases"][1] if "review_cases" in s]
    assert len(cases_opened) == 2  # one same-entry case (00001 again), one possible duplicate (Бек under 00009)
    assert by_case["persons"][0][0][4] == 1
    assert by_case["stored"][1][0] == "<begin>" and by_case["stored"][1][-1] == "COMMIT"


async def test_values_the_database_refuses_fail_only_their_own_job(engine: Engine) -> None:  # noqa: F811 - the imported fixture
    """Two sheets with one index break the sheets' primary key on both engines: that batch alone is refused."""
    async with opened(engine, max_group=3, max_wait_ms=1000) as store:
        good = [item("TAB-0002", 1), item("TAB-0002", 2)]
        bad = item("TAB-0009", 7)
        bad = dataclasses.replace(bad, sheets=(bad.sheets[0], bad.sheets[0]))
        with capture_logs() as logs:
            results = await asyncio.gather(
                store.ingest(good[0]), store.ingest(bad), store.ingest(good[1]), return_exceptions=True
            )
        assert store.group_sizes[-1] == 3
        # PostgreSQL's DETAIL line quotes the row's values (names, birth dates on other constraints): never
        # in the error or the log, on either engine
        said = [str(results[1])] + [str(e) for e in logs if e["event"] == "store.job.refused"]
        assert len(said) == 2 and not [t for t in said if "DETAIL" in t or "Key (" in t], said
        assert await store.find_batch("TAB-0009", 7) is None
        await store.use_nonce(bad.nonce)  # its nonce went back with it
    assert results[0] == Stored(good[0].receipt) and results[2] == Stored(good[1].receipt)
    assert isinstance(results[1], StoreError) and not isinstance(results[1], StoreUnavailable)
    assert sorted(await engine.rows("SELECT device_id, seq FROM batches")) == [("TAB-0002", 1), ("TAB-0002", 2)]
    assert await engine.rows("SELECT count(*) FROM sheets") == [(4,)]


# ---- the write lock of a SQLite file held by another process ----------------------------------------


@contextlib.asynccontextmanager
async def write_lock_held(db: Path) -> AsyncIterator[sqlite3.Connection]:
    """Another process's writer: holds the file's write lock until the test lets go (ROLLBACK)."""
    other = sqlite3.connect(db, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


def retried(logs: list[dict[str, Any]]) -> bool:
    return any(e["event"] == "store.group.retry" for e in logs)


async def test_sqlite_write_lock_held_elsewhere_is_waited_for_and_the_group_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.store_sqlite, "_BUSY_TIMEOUT_S", 1.0)
    db = tmp_path / "census.db"
    batch = item("TAB-0001", 1)
    async with opened(Engine("sqlite", str(db))) as store:
        with capture_logs() as logs:
            async with write_lock_held(db) as other:
                pending = asyncio.create_task(store.ingest(batch))
                await until(partial(retried, logs), timeout_s=10, what="a busy retry")
                assert not pending.done()  # no answer while the batch is not written
                assert other.execute("SELECT count(*) FROM batches").fetchone() == (0,)
                other.execute("ROLLBACK")  # the other process lets go before the retry gives up
            assert await pending == Stored(batch.receipt)
        assert (await store.counts())["batches"] == 1
    retries = [e for e in logs if e["event"] == "store.group.retry"]
    assert retries[0]["sqlstate"] == "SQLITE_BUSY"
    assert not [e for e in logs if e["event"] == "store.write_failed"]


async def test_sqlite_write_lock_never_released_fails_the_group_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.store_sqlite, "_BUSY_TIMEOUT_S", 0.1)
    db = tmp_path / "census.db"
    async with opened(Engine("sqlite", str(db)), max_wait_ms=50) as store:
        with capture_logs() as logs:
            async with write_lock_held(db):
                results = await asyncio.gather(
                    store.ingest(item("TAB-0001", 1)), store.use_nonce(NonceUse(KEY, "n", FAR)), return_exceptions=True
                )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert (await store.counts())["batches"] == (await store.counts())["nonces"] == 0
        await store.use_nonce(NonceUse(KEY, "n", FAR))  # the nonce was not spent by the failed group
    assert [e["attempt"] for e in logs if e["event"] == "store.group.retry"] == [1, 2]
    assert [e["jobs"] for e in logs if e["event"] == "store.write_failed"] == [2]


# ---- one definition: the engine modules carry no rule and no committer of their own ------------------


OPERATIONS = [name for name in vars(CensusStore) if not name.startswith("_") and name not in ("open", "close")]
SHARED = [op for op in OPERATIONS if op != "watch_registry"]


@pytest.mark.parametrize("store_class", [SqliteStore, PostgresStore], ids=["sqlite", "postgres"])
def test_every_store_operation_is_the_shared_one(store_class: type) -> None:
    assert issubclass(store_class, SharedStore)
    for op in SHARED:
        assert getattr(store_class, op) is getattr(SharedStore, op), op
    assert {"group_sizes", "last_commit_s", "queue_depth"} <= set(dir(store_class))


_RULE_NAMES = {
    "ruleerror",
    "resolve",
    "ingest",
    "countpersons",
    "opencase",
    "insertnonce",
    "savesnapshot",
    "addcustody",
    "takegroup",
    "writeloop",
    "commitgroup",
    "runjob",
    "grouptransaction",
}
_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|SAVEPOINT|RELEASE)\b")


@pytest.mark.parametrize("path", ENGINE_MODULES, ids=lambda p: p.stem)
def test_engine_modules_define_no_rule_and_no_store_sql(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {
        node.name.replace("_", "").lower()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    assert not defined & _RULE_NAMES
    statements = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.match(node.value)
    ]
    # SQLite's bookkeeping of its migrations and PostgreSQL's NOTIFY (its dialect) are all an engine writes itself
    allowed = [s for s in statements if "schema_migrations" in s or s == PostgresStore.DIALECT.notify_registry]
    assert statements == allowed
    assert "group_sizes" not in {
        t.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Attribute)
    }


def test_each_rule_and_the_committer_are_defined_once_in_the_shared_modules() -> None:
    defined: list[str] = []
    for module in ("store_commit", "store_rules"):
        tree = ast.parse((ROOT / "gateway" / f"{module}.py").read_text(encoding="utf-8"))
        defined += [node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)]
    for name in ("ingest", "count_persons", "open_case", "insert_nonce", "save_snapshot", "add_custody"):
        assert defined.count(name) == 1, name
    for name in ("RuleError", "GroupCommitter", "group_transaction", "SharedStore"):
        assert defined.count(name) == 1, name
    assert store_rules.ingest.__module__ == "gateway.store_rules"
