"""PostgreSQL census store: several gateway instances on one cluster, with group commit.

Cross-instance guarantees come from the database, never from process memory:
UNIQUE (device_id, seq), UNIQUE (batch_hash) and PRIMARY KEY (key_id, nonce).
An ingest inserts with ``ON CONFLICT DO NOTHING``; while another instance holds
the same key uncommitted, PostgreSQL makes the insert wait for that outcome, so
of two racing instances one stores and the other then reads the winner's row
and answers ``Duplicate`` (the stored receipt) or ``Conflict``. Transactions run
at READ COMMITTED, which is what lets that read see the winner's row.

Writes go through one asyncio writer task, as on SQLite: it takes every job
waiting (up to ``max_group``, waiting at most ``max_wait_ms`` for company), runs
each in its own savepoint inside one transaction on one pooled connection,
commits once, and only then resolves the callers' futures. A job that fails on
its own rule (replay, registry rollback) or on its own values (a data or
integrity error) is rolled back to its savepoint alone. An engine failure fails
the whole group with ``StoreUnavailable``, except failures known to have
committed nothing, which are retried: a connection found broken before COMMIT
was sent (e.g. after a server restart) and a deadlock or serialization failure.
A connection lost *during* COMMIT is ambiguous and is never retried here; the
client retries and then gets ``Duplicate`` if it had committed. Jobs are sorted
by key inside a group so two instances' groups take row locks in one order.

Reads and the nonce purge run on pooled connections in autocommit.

Opening refuses a server that may acknowledge unflushed commits
(``NotDurableError``) and applies pending migrations (see ``_schema_postgres``);
every new pooled connection is checked for durability again. The URL may carry
``pool_min_size``, ``pool_max_size`` and ``pool_timeout_s`` query parameters;
they are taken out before libpq sees the URL.

``python -m gateway.store_postgres migrate`` applies migrations as the schema
owner and grants the gateway's role its privileges (least-privilege deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import AsyncConnection, IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from runtime.toml_config import ConfigError
from wire.errors import RollbackError

from ._schema_postgres import (
    NotDurableError,
    apply_migrations,
    check_connection_durable,
    main,
    migrate,
    split_pool_params,
)
from .store import (
    BatchRecord,
    Conflict,
    CustodyItem,
    DeviceSeqs,
    Duplicate,
    IngestItem,
    IngestOutcome,
    NonceUse,
    PersonRecord,
    ReplayError,
    SecurityEvent,
    Stored,
    StoreError,
    StoreUnavailable,
)

__all__ = ["NotDurableError", "PostgresStore", "main", "migrate"]

log = structlog.get_logger("sanaq.gateway")

T = TypeVar("T")
_STOP = object()
_ATTEMPTS = 3
_LISTEN_RETRY_S = 1.0
REGISTRY_CHANNEL = "sanaq_registry"

_INSERT_BATCH = (
    "INSERT INTO batches (device_id, seq, batch_hash, envelope, schema, sealed_at_ms, request_created_s,"
    " received_at_ms, road, signer_key_id, sheets_accepted, sheets_quarantined, receipt)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id"
)
_SAVE_SNAPSHOT = (
    "INSERT INTO registry (id, version, snapshot) VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE"
    " SET version = excluded.version, snapshot = excluded.snapshot WHERE registry.version < excluded.version"
    " OR (registry.version = excluded.version AND registry.snapshot = excluded.snapshot)"
    " RETURNING version"
)

_COUNTED = ("batches", "sheets", "quarantine", "security_events", "custody", "nonces", "persons", "review_cases")
_INSTITUTION_PERSONS = (
    "SELECT p.entry_id, p.road, b.device_id, b.received_at_ms, p.source,"
    " (SELECT count(*) FROM review_cases r WHERE r.institution_code = p.institution_code"
    " AND r.entry_id = p.entry_id AND r.kind = 'same-entry')"
    " FROM persons p JOIN batches b ON b.id = p.batch_id WHERE p.institution_code = %s ORDER BY p.entry_id"
)
_COUNTS = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in _COUNTED)  # noqa: S608 - fixed names


class _RuleError(Exception):
    """Raised inside a job to roll back its savepoint and hand ``error`` to its caller."""

    def __init__(self, error: Exception) -> None:
        self.error = error


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[AsyncConnection[Any]], Awaitable[Any]]
    key: tuple[Any, ...]  # lock order inside a group; the first element names the kind of job
    future: asyncio.Future[Any]


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        max_group: int = 256,
        max_wait_ms: float = 2.0,
        durable: bool = True,
        pool_min_size: int = 2,
        pool_max_size: int = 8,
        pool_timeout_s: float = 10.0,
    ) -> None:
        try:
            self._conninfo, options = split_pool_params(dsn)
            params = conninfo_to_dict(self._conninfo)
        except (ValueError, psycopg.Error) as e:
            raise ConfigError(f"database: not a usable PostgreSQL URL: {e}") from e
        self._pool_min = int(options.get("pool_min_size", pool_min_size))
        self._pool_max = max(self._pool_min, int(options.get("pool_max_size", pool_max_size)), 2)
        self._pool_timeout_s = options.get("pool_timeout_s", pool_timeout_s)
        self._max_group = max_group
        self._max_wait_s = max_wait_ms / 1000
        self._durable = durable
        self._where = f"host={params.get('host', 'default')} dbname={params.get('dbname', 'default')}"
        self._conn_kwargs: dict[str, Any] = {}
        if "application_name" not in params:
            self._conn_kwargs["application_name"] = "sanaq-gateway"
        if "connect_timeout" not in params:
            self._conn_kwargs["connect_timeout"] = 10
        self._pool: AsyncConnectionPool[Any] | None = None
        self._jobs: asyncio.Queue[Any] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.group_sizes: list[int] = []
        self.last_commit_s = 0.0

    # ---- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await AsyncConnection.connect(self._conninfo, autocommit=True, **self._conn_kwargs)
        except psycopg.Error as e:
            raise StoreUnavailable(f"cannot connect to PostgreSQL ({self._where}): {e}") from e
        async with conn:
            try:
                if self._durable:
                    await check_connection_durable(conn)
                applied = await apply_migrations(conn)
            except psycopg.errors.InsufficientPrivilege as e:
                raise StoreUnavailable(
                    f"schema migrations pending ({self._where}) and this role may not apply them;"
                    " run `python -m gateway.store_postgres migrate` as the schema owner"
                ) from e
            except psycopg.Error as e:
                raise StoreUnavailable(f"cannot prepare PostgreSQL store ({self._where}): {e}") from e
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, **self._conn_kwargs},
            min_size=self._pool_min,
            max_size=self._pool_max,
            open=False,
            configure=self._configure,
            timeout=self._pool_timeout_s,
            name="sanaq-census",
        )
        try:
            await pool.open(wait=True, timeout=self._pool_timeout_s)
        except psycopg.Error as e:
            await pool.close()
            raise StoreUnavailable(f"cannot open PostgreSQL pool ({self._where}): {e}") from e
        self._pool = pool
        self._jobs = asyncio.Queue()
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name="postgres-writer")
        log.info("store.postgres.open", where=self._where, migrated=applied, pool_max=self._pool_max)

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        await conn.set_isolation_level(IsolationLevel.READ_COMMITTED)
        if self._durable:
            await check_connection_durable(conn)

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None and self._jobs is not None:
            self._jobs.put_nowait(_STOP)
            await self._writer
            self._writer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def queue_depth(self) -> int:
        return 0 if self._jobs is None else self._jobs.qsize()

    # ---- the writer ------------------------------------------------------------
    async def _write(self, key: tuple[Any, ...], fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        if self._writer is None or self._jobs is None or self._closing:
            raise StoreUnavailable("store is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(_Job(fn, key, fut))
        return await fut

    async def _write_loop(self) -> None:
        while True:
            group, stop = await self._take_group()
            if group:
                try:
                    await self._run_group(group)
                except Exception as e:  # the writer must outlive any one group
                    log.exception("store.writer.failed")
                    for job in group:
                        _resolve(job.future, False, StoreUnavailable(f"store write failed: {e}"))
            if stop:
                while self._jobs is not None and not self._jobs.empty():
                    item = self._jobs.get_nowait()
                    if isinstance(item, _Job):
                        _resolve(item.future, False, StoreUnavailable("store is closed"))
                return

    async def _take_group(self) -> tuple[list[_Job], bool]:
        jobs = self._jobs
        if jobs is None:
            return [], True
        first = await jobs.get()
        if first is _STOP:
            return [], True
        group = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while len(group) < self._max_group:
            try:
                item = jobs.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await jobs.get()
                except TimeoutError:
                    break
            if item is _STOP:
                return group, True
            group.append(item)
        return group, False

    async def _run_group(self, group: list[_Job]) -> None:
        started = time.monotonic()
        ordered = sorted(group, key=lambda job: job.key)
        results = await self._commit_group(ordered)
        self.group_sizes.append(len(ordered))
        if len(self.group_sizes) > 4096:
            del self.group_sizes[:2048]
        self.last_commit_s = time.monotonic() - started
        for job, (ok, value) in zip(ordered, results, strict=True):
            _resolve(job.future, ok, value)

    async def _commit_group(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        pool = self._pool
        if pool is None:
            return [(False, StoreUnavailable("store is closed"))] * len(jobs)
        for attempt in range(1, _ATTEMPTS + 1):
            conn: AsyncConnection[Any] | None = None
            committing = False
            try:
                async with pool.connection() as conn:
                    results = []
                    async with conn.transaction():
                        for job in jobs:
                            results.append(await _run_job(conn, job))
                        committing = True
                    return results
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
                error: psycopg.Error = e  # rolled back by the server: nothing of the group committed
                retry = True
            except psycopg.OperationalError as e:
                error = e
                retry = not committing and conn is not None and conn.broken
                if retry:
                    await _drop_broken(pool)
            except psycopg.Error as e:
                error = e
                retry = False
            if not retry or attempt == _ATTEMPTS:
                log.error("store.write_failed", error=str(error), sqlstate=error.sqlstate, jobs=len(jobs))
                failure = StoreUnavailable(f"store write failed: {error}")
                return [(False, failure)] * len(jobs)
            log.warning("store.group.retry", sqlstate=error.sqlstate, attempt=attempt, jobs=len(jobs))
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is closed")
        for attempt in range(1, _ATTEMPTS + 1):
            conn: AsyncConnection[Any] | None = None
            try:
                async with pool.connection() as conn:
                    return await fn(conn)
            except psycopg.OperationalError as e:
                if conn is None or not conn.broken or attempt == _ATTEMPTS:
                    raise StoreUnavailable(f"store read failed: {e}") from e
                await _drop_broken(pool)
            except psycopg.Error as e:
                raise StoreUnavailable(f"store read failed: {e}") from e
        raise AssertionError("unreachable")

    # ---- operations --------------------------------------------------------------
    async def ingest(self, item: IngestItem) -> IngestOutcome:
        async def job(conn: AsyncConnection[Any]) -> IngestOutcome:
            await _insert_nonce(conn, item.nonce)
            cur = await conn.execute(
                _INSERT_BATCH,
                (
                    item.device_id,
                    item.seq,
                    item.batch_hash,
                    item.envelope,
                    item.schema,
                    item.sealed_at_ms,
                    item.request_created_s,
                    item.received_at_ms,
                    item.road,
                    item.signer_key_id,
                    len(item.sheets),
                    len(item.quarantined),
                    item.receipt,
                ),
            )
            row = await cur.fetchone()
            if row is None:  # the key is taken by a committed row (a racing insert was waited for)
                cur = await conn.execute(
                    "SELECT batch_hash, receipt FROM batches WHERE device_id = %s AND seq = %s",
                    (item.device_id, item.seq),
                )
                held = await cur.fetchone()
                if held is None:  # batch_hash stored under another (device_id, seq): it covers both
                    raise _RuleError(StoreError("batch hash already stored under another device and seq"))
                stored_hash, receipt = bytes(held[0]), bytes(held[1])
                return Duplicate(receipt) if stored_hash == item.batch_hash else Conflict(stored_hash)
            batch_id = row[0]
            async with conn.cursor() as c:
                if item.sheets:
                    await c.executemany(
                        "INSERT INTO sheets (batch_id, idx, sheet_id, institution_code, respondent_list_entry, body)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (batch_id, s.index, s.sheet_id, s.institution_code, s.respondent_list_entry, s.body_json)
                            for s in item.sheets
                        ],
                    )
                if item.quarantined:
                    await c.executemany(
                        "INSERT INTO quarantine (batch_id, idx, reason, body) VALUES (%s, %s, %s, %s)",
                        [(batch_id, q.index, q.reason, q.body_json) for q in item.quarantined],
                    )
            await _count_persons(conn, batch_id, item)
            return Stored(item.receipt)

        return await self._write((0, item.device_id, item.seq), job)

    async def use_nonce(self, nonce: NonceUse) -> None:
        await self._write((1, nonce.key_id, nonce.nonce), lambda conn: _insert_nonce(conn, nonce))

    async def find_batch(self, device_id: str, seq: int) -> BatchRecord | None:
        async def run(conn: AsyncConnection[Any]) -> BatchRecord | None:
            cur = await conn.execute(
                "SELECT batch_hash, receipt, received_at_ms, road FROM batches WHERE device_id = %s AND seq = %s",
                (device_id, seq),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            return BatchRecord(device_id, seq, bytes(row[0]), bytes(row[1]), row[2], row[3])

        return await self._read(run)

    async def device_seqs(self, device_id: str) -> DeviceSeqs:
        async def run(conn: AsyncConnection[Any]) -> DeviceSeqs:
            cur = await conn.execute(
                "SELECT seq, received_at_ms FROM batches WHERE device_id = %s ORDER BY seq", (device_id,)
            )
            rows = await cur.fetchall()
            return DeviceSeqs(device_id, tuple(r[0] for r in rows), max((r[1] for r in rows), default=None))

        return await self._read(run)

    async def record_security_event(self, event: SecurityEvent) -> None:
        async def job(conn: AsyncConnection[Any]) -> None:
            await conn.execute(
                "INSERT INTO security_events (at_ms, kind, device_id, seq, key_id, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    event.at_ms,
                    event.kind,
                    event.device_id,
                    event.seq,
                    event.key_id,
                    json.dumps(event.detail, sort_keys=True),
                ),
            )

        await self._write((4, event.at_ms), job)

    async def current_snapshot(self) -> bytes | None:
        async def run(conn: AsyncConnection[Any]) -> bytes | None:
            cur = await conn.execute("SELECT snapshot FROM registry WHERE id = 1")
            row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(run)

    async def save_snapshot(self, version: int, snapshot: bytes) -> None:
        async def job(conn: AsyncConnection[Any]) -> None:
            cur = await conn.execute(_SAVE_SNAPSHOT, (version, snapshot))
            saved = await cur.fetchone()
            if saved is not None:  # delivered to every listening instance when the group commits
                await conn.execute("SELECT pg_notify(%s, %s)", (REGISTRY_CHANNEL, str(version)))
            else:
                cur = await conn.execute("SELECT version FROM registry WHERE id = 1")
                held = await cur.fetchone()
                raise _RuleError(
                    RollbackError(
                        "snapshot older than the one held, or another with the same version",
                        version=version,
                        held=held[0] if held else None,
                    )
                )

        await self._write((3, version), job)

    async def snapshot_version(self) -> int | None:
        async def run(conn: AsyncConnection[Any]) -> int | None:
            cur = await conn.execute("SELECT version FROM registry WHERE id = 1")
            row = await cur.fetchone()
            return None if row is None else int(row[0])

        return await self._read(run)

    async def watch_registry(self, changed: Callable[[], None]) -> None:
        """``LISTEN`` on its own connection and call ``changed`` for every registry NOTIFY, until cancelled.

        A lost connection is reopened after ``_LISTEN_RETRY_S``, and ``changed``
        is called once it is back (a notification may have been missed); the
        caller's periodic check covers the gap (``gateway.registry``).
        """
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    **{**self._conn_kwargs, "application_name": "sanaq-gateway-registry"},
                )
                async with conn:
                    await conn.execute(f"LISTEN {REGISTRY_CHANNEL}")
                    changed()
                    async for _ in conn.notifies():
                        changed()
            except psycopg.Error as e:
                log.warning("store.registry_listen.lost", error=str(e), where=self._where)
            await asyncio.sleep(_LISTEN_RETRY_S)

    async def add_custody(self, item: CustodyItem) -> None:
        record_hash = hashlib.sha256(item.record).digest()

        async def job(conn: AsyncConnection[Any]) -> None:
            await _insert_nonce(conn, item.nonce)
            await conn.execute(
                "INSERT INTO custody (station_id, device_id, pulled_at_ms, received_at_ms, batch_count,"
                " record, record_hash) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (record_hash) DO NOTHING",
                (
                    item.station_id,
                    item.device_id,
                    item.pulled_at_ms,
                    item.received_at_ms,
                    item.batch_count,
                    item.record,
                    record_hash,
                ),
            )

        await self._write((2, record_hash), job)

    async def purge_nonces(self, now_ms: int) -> int:
        async def run(conn: AsyncConnection[Any]) -> int:
            cur = await conn.execute("DELETE FROM nonces WHERE expires_at_ms < %s", (now_ms,))
            return cur.rowcount

        return await self._read(run)

    async def counts(self) -> dict[str, int]:
        async def run(conn: AsyncConnection[Any]) -> dict[str, int]:
            cur = await conn.execute(_COUNTS)
            row = await cur.fetchone()
            if row is None:
                raise StoreError("SELECT of the counts returned no row")
            return dict(zip(_COUNTED, (int(v) for v in row), strict=True))

        return await self._read(run)

    async def institution_persons(self, institution_code: str) -> list[PersonRecord]:
        async def run(conn: AsyncConnection[Any]) -> list[PersonRecord]:
            cur = await conn.execute(_INSTITUTION_PERSONS, (institution_code,))
            return [PersonRecord(r[0], r[1], r[2], int(r[3]), r[4], int(r[5])) for r in await cur.fetchall()]

        return await self._read(run)


async def _count_persons(conn: AsyncConnection[Any], batch_id: int, item: IngestItem) -> None:
    """Count each institution sheet's entry once; a later sheet for a counted entry opens a review case.

    ``ON CONFLICT DO NOTHING`` waits for a racing instance's uncommitted row
    and then yields to it; the SELECT after it (READ COMMITTED, a new
    snapshot) sees the winner, so exactly one sheet counts and the other
    opens the case, whichever instance stores it.
    """
    for s in item.sheets:
        code, entry = s.institution_code, s.respondent_list_entry
        if code is None or entry is None:
            continue
        cur = await conn.execute(
            "INSERT INTO persons (institution_code, entry_id, batch_id, idx, road, source, region, person_key,"
            " counted_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (institution_code, entry_id) DO NOTHING",
            (
                code,
                entry,
                batch_id,
                s.index,
                item.road,
                s.source or "",
                s.region or "",
                s.person_key,
                item.received_at_ms,
            ),
        )
        if cur.rowcount == 0:
            cur = await conn.execute(
                "SELECT batch_id, idx FROM persons WHERE institution_code = %s AND entry_id = %s", (code, entry)
            )
            held = await cur.fetchone()
            if held is None:
                raise StoreError("a counted entry vanished between insert and read")
            await _open_case(
                conn,
                kind="same-entry",
                code=code,
                entry=entry,
                first=(held[0], held[1]),
                second=(batch_id, s.index),
                item=item,
            )
        if s.person_key is None:
            continue
        cur = await conn.execute(
            "INSERT INTO person_keys (institution_code, person_key, entry_id, batch_id, idx)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (institution_code, person_key) DO NOTHING",
            (code, s.person_key, entry, batch_id, s.index),
        )
        if cur.rowcount == 0:
            cur = await conn.execute(
                "SELECT entry_id, batch_id, idx FROM person_keys WHERE institution_code = %s AND person_key = %s",
                (code, s.person_key),
            )
            key_held = await cur.fetchone()
            if key_held is not None and key_held[0] != entry:
                await _open_case(
                    conn,
                    kind="possible-duplicate",
                    code=code,
                    entry=key_held[0],
                    first=(key_held[1], key_held[2]),
                    second=(batch_id, s.index),
                    item=item,
                )


async def _open_case(
    conn: AsyncConnection[Any],
    *,
    kind: str,
    code: str,
    entry: str,
    first: tuple[int, int],
    second: tuple[int, int],
    item: IngestItem,
) -> None:
    await conn.execute(
        "INSERT INTO review_cases (kind, institution_code, entry_id, first_batch_id, first_idx, second_batch_id,"
        " second_idx, opened_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (kind, code, entry, first[0], first[1], second[0], second[1], item.received_at_ms),
    )


async def _run_job(conn: AsyncConnection[Any], job: _Job) -> tuple[bool, Any]:
    try:
        async with conn.transaction():  # nested: a SAVEPOINT
            return True, await job.fn(conn)
    except _RuleError as e:
        return False, e.error
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as e:
        log.error("store.job.refused", sqlstate=e.sqlstate, error=str(e))
        return False, StoreError(f"the database refused this write's values ({e.sqlstate})")


async def _insert_nonce(conn: AsyncConnection[Any], nonce: NonceUse) -> None:
    cur = await conn.execute(
        "INSERT INTO nonces (key_id, nonce, expires_at_ms) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (nonce.key_id, nonce.nonce, nonce.expires_at_ms),
    )
    if cur.rowcount != 1:
        raise _RuleError(ReplayError("nonce already used"))


async def _drop_broken(pool: AsyncConnectionPool[Any]) -> None:
    """Test the idle connections and replace the dead ones (one outage breaks them all)."""
    with contextlib.suppress(psycopg.Error):
        await pool.check()


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


if __name__ == "__main__":
    sys.exit(main())
