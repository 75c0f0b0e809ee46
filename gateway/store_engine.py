"""The census store written once: one group committer and one definition of every store rule.

Both engines (``store_sqlite``, ``store_postgres``) run this code; what each
engine keeps to itself is its SQL dialect (``Dialect``), its parameter style,
and its connections and transactions (the ``EngineAdapter`` hooks of
``SharedStore``). See docs/adr/0002-sqlite-group-commit.md.

**Rules as statement generators.** A rule (replay, duplicate vs conflict,
quarantine, persons and review cases, registry rollback ...) is a generator
that yields ``Sql`` statements and receives their ``Rows``; it never touches a
connection. An engine drives it with ``drive_sync`` (SQLite, on its writer
thread) or ``drive_async`` (PostgreSQL, on the event loop). An engine error
is thrown back into the generator at the statement that failed, already
translated: ``ValueRefused`` (the database refused this statement's values;
only the job is rolled back) or ``EngineFailure`` (the whole group fails,
retried only if it is known that nothing committed). SQL is written with
``?`` placeholders; an engine converts them to its parameter style.

**The group committer.** Writers hand ``GroupCommitter`` jobs; it takes every
job waiting (up to ``max_group``, waiting at most ``max_wait_s`` for company),
orders them by key (so instances sharing a database take row locks in one
order), runs each inside its own savepoint in one transaction
(``group_transaction``), commits once and only then answers the callers.
A job that breaks its own rule or whose values the database refuses is
rolled back to its savepoint alone; an engine failure or a failed COMMIT
fails every job of the group with ``StoreUnavailable``, so nothing is
acknowledged that was not written. A group that failed before COMMIT was
sent with an error that guarantees nothing committed (a lost connection, a
deadlock or serialization failure, a write lock held by another process) is
run again, up to ``ATTEMPTS`` times in all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import structlog

from wire.errors import RollbackError

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

__all__ = [
    "ATTEMPTS",
    "COMMIT",
    "Dialect",
    "EngineFailure",
    "GroupCommitter",
    "REGISTRY_CHANNEL",
    "Job",
    "Rows",
    "RuleError",
    "SharedStore",
    "Sql",
    "Step",
    "ValueRefused",
    "drive_async",
    "drive_sync",
    "group_transaction",
]

log = structlog.get_logger("sanaq.gateway")

T = TypeVar("T")
ATTEMPTS = 3
_STOP = object()


# ---- statements, results and the errors an engine throws back -------------------------------------
@dataclass(frozen=True, slots=True)
class Sql:
    text: str  # "?" placeholders
    params: Sequence[Any] = ()  # for ``many``: a sequence of parameter rows
    many: bool = False


@dataclass(frozen=True, slots=True)
class Rows:
    rowcount: int
    rows: list[tuple[Any, ...]]

    def one(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


Step = Generator[Sql, Rows, T]
COMMIT = Sql("COMMIT")


class RuleError(Exception):
    """Raised by a rule to roll back its job's savepoint and hand ``error`` to its caller."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class ValueRefused(StoreError):
    """The database refused one statement's values (a data or integrity error): only its job fails."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


class EngineFailure(StoreUnavailable):
    """The engine failed the transaction; ``retry`` only when it is known that nothing was committed."""

    def __init__(self, message: str, code: str | None, *, retry: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retry = retry


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs in the SQL text between engines."""

    begin: str  # the statement that opens a group's write transaction
    notify_registry: str | None  # tells other instances a new registry snapshot is saved (two parameters)


def drive_sync(step: Step[T], execute: Callable[[Sql], Rows]) -> T:
    """Run a rule on a blocking connection; ``execute`` raises the translated errors."""
    result: Rows | None = None
    error: Exception | None = None
    while True:
        try:
            sql = step.throw(error) if error is not None else step.send(result)  # type: ignore[arg-type]
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            result, error = execute(sql), None
        except Exception as e:  # handed to the rule at the statement that failed
            result, error = None, e


async def drive_async(step: Step[T], execute: Callable[[Sql], Awaitable[Rows]]) -> T:
    """Run a rule on an asyncio connection; ``execute`` raises the translated errors."""
    result: Rows | None = None
    error: Exception | None = None
    while True:
        try:
            sql = step.throw(error) if error is not None else step.send(result)  # type: ignore[arg-type]
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            result, error = await execute(sql), None
        except Exception as e:  # handed to the rule at the statement that failed
            result, error = None, e


# ---- the group transaction -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Job:
    rule: Callable[[], Step[Any]]  # a fresh generator for every attempt
    key: tuple[Any, ...]  # lock order inside a group; the first element names the kind of job
    future: asyncio.Future[Any]


Outcome = tuple[bool, Any]  # (True, value) or (False, the exception for the caller)


_SAVEPOINT, _RELEASE, _ROLLBACK_TO = Sql("SAVEPOINT job"), Sql("RELEASE job"), Sql("ROLLBACK TO job")


def group_transaction(jobs: Sequence[Job], dialect: Dialect) -> Step[list[Outcome]]:
    """One transaction for the group, one savepoint per job, one COMMIT at the end."""
    yield Sql(dialect.begin)
    outcomes: list[Outcome] = []
    for job in jobs:
        yield _SAVEPOINT  # one name: a job's savepoint is released before the next one is taken
        try:
            value = yield from job.rule()
        except EngineFailure:
            raise
        except RuleError as e:
            failed: Outcome = (False, e.error)
        except ValueRefused as e:
            log.error("store.job.refused", sqlstate=e.code, error=str(e))
            failed = (False, StoreError(f"the database refused this write's values ({e.code})"))
        except Exception as e:  # a bug in one job must not fail its group
            log.error("store.job.refused", error=type(e).__name__)
            failed = (False, StoreError(f"store job failed: {type(e).__name__}"))
        else:
            yield _RELEASE
            outcomes.append((True, value))
            continue
        yield _ROLLBACK_TO
        yield _RELEASE
        outcomes.append(failed)
    yield COMMIT
    return outcomes


class GroupCommitter:
    """Takes jobs from a queue in groups and hands each group to ``run_group`` (one engine transaction).

    ``run_group`` answers one outcome per job, in order, after its COMMIT
    returned, or raises ``EngineFailure``. The callers' futures are resolved
    only then: durability before any answer.
    """

    def __init__(
        self,
        run_group: Callable[[list[Job]], Awaitable[list[Outcome]]],
        *,
        max_group: int,
        max_wait_s: float,
        name: str,
    ) -> None:
        self._run_group = run_group
        self._max_group = max_group
        self._max_wait_s = max_wait_s
        self._name = name
        self._jobs: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.group_sizes: list[int] = []
        self.last_commit_s = 0.0

    def start(self) -> None:
        self._jobs = asyncio.Queue()
        self._closing = False
        self._task = asyncio.create_task(self._loop(), name=self._name)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._closing

    @property
    def queue_depth(self) -> int:
        return 0 if self._jobs is None else self._jobs.qsize()

    async def submit(self, key: tuple[Any, ...], rule: Callable[[], Step[T]]) -> T:
        if self._task is None or self._jobs is None or self._closing:
            raise StoreUnavailable("store is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(Job(rule, key, fut))
        return await fut

    async def stop(self) -> None:
        """Commit what was handed in before, refuse what comes after."""
        self._closing = True
        if self._task is not None and self._jobs is not None:
            self._jobs.put_nowait(_STOP)
            await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            group, stop = await self._take_group()
            if group:
                try:
                    await self._commit(group)
                except Exception as e:  # the writer must outlive any one group
                    log.exception("store.writer.failed")
                    for job in group:
                        _resolve(job.future, (False, StoreUnavailable(f"store write failed: {e}")))
            if stop:
                while self._jobs is not None and not self._jobs.empty():
                    item = self._jobs.get_nowait()
                    if isinstance(item, Job):
                        _resolve(item.future, (False, StoreUnavailable("store is closed")))
                return

    async def _take_group(self) -> tuple[list[Job], bool]:
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

    async def _commit(self, group: list[Job]) -> None:
        started = time.monotonic()
        ordered = sorted(group, key=lambda job: job.key)  # stable: one key keeps its arrival order
        outcomes = await self._attempts(ordered)
        self.group_sizes.append(len(ordered))
        if len(self.group_sizes) > 4096:
            del self.group_sizes[:2048]
        self.last_commit_s = time.monotonic() - started
        for job, outcome in zip(ordered, outcomes, strict=True):
            _resolve(job.future, outcome)

    async def _attempts(self, jobs: list[Job]) -> list[Outcome]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._run_group(jobs)
            except EngineFailure as e:
                if not e.retry or attempt == ATTEMPTS:
                    log.error("store.write_failed", error=str(e), sqlstate=e.code, jobs=len(jobs))
                    return [(False, StoreUnavailable(f"store write failed: {e}"))] * len(jobs)
                log.warning("store.group.retry", sqlstate=e.code, attempt=attempt, jobs=len(jobs))
        raise AssertionError("unreachable")


def _resolve(fut: asyncio.Future[Any], outcome: Outcome) -> None:
    if fut.done():
        return
    ok, value = outcome
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


# ---- the rules -------------------------------------------------------------------------------------------
def insert_nonce(nonce: NonceUse) -> Step[None]:
    """A (key id, nonce) pair is accepted once."""
    rows = yield Sql(
        "INSERT INTO nonces (key_id, nonce, expires_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (nonce.key_id, nonce.nonce, nonce.expires_at_ms),
    )
    if rows.rowcount != 1:
        raise RuleError(ReplayError("nonce already used"))


_INSERT_BATCH = (
    "INSERT INTO batches (device_id, seq, batch_hash, envelope, schema, sealed_at_ms, request_created_s,"
    " received_at_ms, road, signer_key_id, sheets_accepted, sheets_quarantined, receipt)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id"
)


def ingest(item: IngestItem) -> Step[IngestOutcome]:
    """Nonce, batch, sheets, quarantine and persons together; the same batch again is ``Duplicate``.

    ``ON CONFLICT DO NOTHING`` on the batch waits (PostgreSQL) for a racing
    instance's uncommitted row and yields to it; the SELECT after it sees the
    winner (READ COMMITTED), which decides ``Duplicate`` (same hash) or
    ``Conflict`` (other bytes under the same device and seq). Nothing stored
    changes for either.
    """
    yield from insert_nonce(item.nonce)
    inserted = yield Sql(
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
    row = inserted.one()
    if row is None:  # the key is taken by a committed row
        held = (
            yield Sql(
                "SELECT batch_hash, receipt FROM batches WHERE device_id = ? AND seq = ?", (item.device_id, item.seq)
            )
        ).one()
        if held is None:  # batch_hash stored under another (device_id, seq): it covers both
            raise RuleError(StoreError("batch hash already stored under another device and seq"))
        stored_hash, receipt = bytes(held[0]), bytes(held[1])
        return Duplicate(receipt) if stored_hash == item.batch_hash else Conflict(stored_hash)
    batch_id = int(row[0])
    if item.sheets:
        yield Sql(
            "INSERT INTO sheets (batch_id, idx, sheet_id, institution_code, respondent_list_entry, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (batch_id, s.index, s.sheet_id, s.institution_code, s.respondent_list_entry, s.body_json)
                for s in item.sheets
            ],
            many=True,
        )
    if item.quarantined:
        yield Sql(
            "INSERT INTO quarantine (batch_id, idx, reason, body) VALUES (?, ?, ?, ?)",
            [(batch_id, q.index, q.reason, q.body_json) for q in item.quarantined],
            many=True,
        )
    yield from count_persons(batch_id, item)
    return Stored(item.receipt)


def count_persons(batch_id: int, item: IngestItem) -> Step[None]:
    """Count each institution sheet's entry once; a later sheet for a counted entry opens a review case.

    ``ON CONFLICT DO NOTHING`` decides the first sheet by the unique key (on
    PostgreSQL it waits for a racing instance's uncommitted row and yields to
    it); the SELECT after it sees the winner, so exactly one sheet counts and
    the other opens the case, whichever instance stores it. A person key held
    by another entry opens a possible-duplicate case.
    """
    for s in item.sheets:
        code, entry = s.institution_code, s.respondent_list_entry
        if code is None or entry is None:
            continue
        counted = yield Sql(
            "INSERT INTO persons (institution_code, entry_id, batch_id, idx, road, source, region, person_key,"
            " counted_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (institution_code, entry_id) DO NOTHING",
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
        if counted.rowcount == 0:
            held = (
                yield Sql(
                    "SELECT batch_id, idx FROM persons WHERE institution_code = ? AND entry_id = ?", (code, entry)
                )
            ).one()
            if held is None:
                raise RuleError(StoreError("a counted entry vanished between insert and read"))
            yield from open_case(
                "same-entry", code, entry, first=(held[0], held[1]), second=(batch_id, s.index), item=item
            )
        if s.person_key is None:
            continue
        keyed = yield Sql(
            "INSERT INTO person_keys (institution_code, person_key, entry_id, batch_id, idx) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (institution_code, person_key) DO NOTHING",
            (code, s.person_key, entry, batch_id, s.index),
        )
        if keyed.rowcount == 0:
            key_held = (
                yield Sql(
                    "SELECT entry_id, batch_id, idx FROM person_keys WHERE institution_code = ? AND person_key = ?",
                    (code, s.person_key),
                )
            ).one()
            if key_held is not None and key_held[0] != entry:
                second = (batch_id, s.index)
                first = (key_held[1], key_held[2])
                yield from open_case("possible-duplicate", code, key_held[0], first=first, second=second, item=item)


def open_case(
    kind: str, code: str, entry: str, *, first: tuple[int, int], second: tuple[int, int], item: IngestItem
) -> Step[None]:
    """A review case names the sheet that counts (``first``) and the later one (``second``)."""
    yield Sql(
        "INSERT INTO review_cases (kind, institution_code, entry_id, first_batch_id, first_idx, second_batch_id,"
        " second_idx, opened_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (kind, code, entry, first[0], first[1], second[0], second[1], item.received_at_ms),
    )


def record_security_event(event: SecurityEvent) -> Step[None]:
    yield Sql(
        "INSERT INTO security_events (at_ms, kind, device_id, seq, key_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (event.at_ms, event.kind, event.device_id, event.seq, event.key_id, json.dumps(event.detail, sort_keys=True)),
    )


REGISTRY_CHANNEL = "sanaq_registry"  # PostgreSQL NOTIFY channel of registry saves
_SAVE_SNAPSHOT = (
    "INSERT INTO registry (id, version, snapshot) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE"
    " SET version = excluded.version, snapshot = excluded.snapshot WHERE registry.version < excluded.version"
    " OR (registry.version = excluded.version AND registry.snapshot = excluded.snapshot)"
    " RETURNING version"
)


def save_snapshot(version: int, snapshot: bytes, dialect: Dialect) -> Step[None]:
    """The registry version only grows; the same version is accepted again only with the same bytes."""
    saved = yield Sql(_SAVE_SNAPSHOT, (version, snapshot))
    if saved.one() is not None:
        if dialect.notify_registry is not None:  # delivered to every listening instance when the group commits
            yield Sql(dialect.notify_registry, (REGISTRY_CHANNEL, str(version)))
        return
    held = (yield Sql("SELECT version FROM registry WHERE id = 1")).one()
    held_version = None if held is None else int(held[0])
    if held_version is not None and held_version > version:
        raise RuleError(RollbackError("snapshot older than the one held", version=version, held=held_version))
    raise RuleError(RollbackError("another snapshot with the version held", version=version))


def add_custody(item: CustodyItem) -> Step[None]:
    """A custody record is kept once (by its hash); its nonce is checked like any other."""
    yield from insert_nonce(item.nonce)
    yield Sql(
        "INSERT INTO custody (station_id, device_id, pulled_at_ms, received_at_ms, batch_count, record, record_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (record_hash) DO NOTHING",
        (
            item.station_id,
            item.device_id,
            item.pulled_at_ms,
            item.received_at_ms,
            item.batch_count,
            item.record,
            hashlib.sha256(item.record).digest(),
        ),
    )


def purge_nonces(now_ms: int) -> Step[int]:
    return (yield Sql("DELETE FROM nonces WHERE expires_at_ms < ?", (now_ms,))).rowcount


def find_batch(device_id: str, seq: int) -> Step[BatchRecord | None]:
    row = (
        yield Sql(
            "SELECT batch_hash, receipt, received_at_ms, road FROM batches WHERE device_id = ? AND seq = ?",
            (device_id, seq),
        )
    ).one()
    if row is None:
        return None
    return BatchRecord(device_id, seq, bytes(row[0]), bytes(row[1]), int(row[2]), row[3])


def device_seqs(device_id: str) -> Step[DeviceSeqs]:
    rows = (yield Sql("SELECT seq, received_at_ms FROM batches WHERE device_id = ? ORDER BY seq", (device_id,))).rows
    return DeviceSeqs(device_id, tuple(int(r[0]) for r in rows), max((int(r[1]) for r in rows), default=None))


def current_snapshot() -> Step[bytes | None]:
    row = (yield Sql("SELECT snapshot FROM registry WHERE id = 1")).one()
    return None if row is None else bytes(row[0])


def snapshot_version() -> Step[int | None]:
    row = (yield Sql("SELECT version FROM registry WHERE id = 1")).one()
    return None if row is None else int(row[0])


_COUNTED = ("batches", "sheets", "quarantine", "security_events", "custody", "nonces", "persons", "review_cases")
_COUNTS = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in _COUNTED)  # noqa: S608 - fixed names


def counts() -> Step[dict[str, int]]:
    row = (yield Sql(_COUNTS)).one()
    if row is None:
        raise StoreError("SELECT of the counts returned no row")
    return dict(zip(_COUNTED, (int(v) for v in row), strict=True))


def institution_persons(institution_code: str) -> Step[list[PersonRecord]]:
    rows = (
        yield Sql(
            "SELECT p.entry_id, p.road, b.device_id, b.received_at_ms, p.source,"
            " (SELECT count(*) FROM review_cases r WHERE r.institution_code = p.institution_code"
            " AND r.entry_id = p.entry_id AND r.kind = 'same-entry')"
            " FROM persons p JOIN batches b ON b.id = p.batch_id WHERE p.institution_code = ? ORDER BY p.entry_id",
            (institution_code,),
        )
    ).rows
    return [PersonRecord(r[0], r[1], r[2], int(r[3]), r[4], int(r[5])) for r in rows]


# ---- the store, once ---------------------------------------------------------------------------------------
class SharedStore:
    """Every ``CensusStore`` operation, written once over the engine adapter hooks.

    An engine subclass supplies ``DIALECT``, ``PURGE_IN_GROUP`` (whether the
    nonce purge needs the writer), creates ``self._committer`` with its
    ``run_group`` (drive ``group_transaction`` in one engine transaction) and
    implements ``_read`` (drive a rule on a reading connection).
    """

    DIALECT: ClassVar[Dialect]
    PURGE_IN_GROUP: ClassVar[bool]
    _committer: GroupCommitter

    async def _read(self, rule: Callable[[], Step[T]]) -> T:
        raise NotImplementedError

    def _group_transaction(self, jobs: Sequence[Job]) -> Step[list[Outcome]]:
        return group_transaction(jobs, self.DIALECT)

    @property
    def group_sizes(self) -> list[int]:
        return self._committer.group_sizes

    @property
    def last_commit_s(self) -> float:
        return self._committer.last_commit_s

    @property
    def queue_depth(self) -> int:
        return self._committer.queue_depth

    async def ingest(self, item: IngestItem) -> IngestOutcome:
        return await self._committer.submit((0, item.device_id, item.seq), lambda: ingest(item))

    async def use_nonce(self, nonce: NonceUse) -> None:
        await self._committer.submit((1, nonce.key_id, nonce.nonce), lambda: insert_nonce(nonce))

    async def add_custody(self, item: CustodyItem) -> None:
        await self._committer.submit((2, hashlib.sha256(item.record).digest()), lambda: add_custody(item))

    async def save_snapshot(self, version: int, snapshot: bytes) -> None:
        await self._committer.submit((3, version), lambda: save_snapshot(version, snapshot, self.DIALECT))

    async def record_security_event(self, event: SecurityEvent) -> None:
        await self._committer.submit((4, event.at_ms), lambda: record_security_event(event))

    async def purge_nonces(self, now_ms: int) -> int:
        if self.PURGE_IN_GROUP:
            return await self._committer.submit((5, now_ms), lambda: purge_nonces(now_ms))
        return await self._read(lambda: purge_nonces(now_ms))

    async def find_batch(self, device_id: str, seq: int) -> BatchRecord | None:
        return await self._read(lambda: find_batch(device_id, seq))

    async def device_seqs(self, device_id: str) -> DeviceSeqs:
        return await self._read(lambda: device_seqs(device_id))

    async def current_snapshot(self) -> bytes | None:
        return await self._read(current_snapshot)

    async def snapshot_version(self) -> int | None:
        return await self._read(snapshot_version)

    async def counts(self) -> dict[str, int]:
        return await self._read(counts)

    async def institution_persons(self, institution_code: str) -> list[PersonRecord]:
        return await self._read(lambda: institution_persons(institution_code))
