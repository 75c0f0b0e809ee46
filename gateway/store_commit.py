"""The group committer both census-store engines share, and the statements it runs.

Both engines (``store_sqlite``, ``store_postgres``) run this code and the
rules of ``store_rules``; what each engine keeps to itself is its SQL dialect
(``Dialect``), its parameter style, and its connections and transactions.
See docs/adr/0002-sqlite-group-commit.md.

**Statements.** A rule is a generator that yields ``Sql`` statements and
receives their ``Rows``; it never touches a connection. An engine drives it
with ``drive_sync`` (SQLite, on its writer thread) or ``drive_async``
(PostgreSQL, on the event loop). An engine error is thrown back into the
generator at the statement that failed, already translated: ``ValueRefused``
(the database refused this statement's values; only the job is rolled back)
or ``EngineFailure`` (the whole group fails; ``retry`` only when it is known
that nothing committed). SQL is written with ``?`` placeholders; an engine
converts them to its parameter style.

**The group committer.** Writers hand ``GroupCommitter`` jobs; it takes every
job waiting (up to ``max_group``, waiting at most ``max_wait_s`` for company),
orders them by key (so instances sharing a database take row locks in one
order), has the engine run them inside one transaction, each in its own
savepoint (``group_transaction``), with one COMMIT, and only then answers the
callers. A job that breaks its own rule or whose values the database refuses
is rolled back to its savepoint alone; an engine failure or a failed COMMIT
fails every job of the group with ``StoreUnavailable``, so nothing is
acknowledged that was not written. A group that failed before COMMIT was
sent with an error that guarantees nothing committed (a lost connection, a
deadlock or serialization failure, a write lock held by another process) is
run again, up to ``ATTEMPTS`` times in all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from .store import StoreError, StoreUnavailable

__all__ = [
    "ATTEMPTS",
    "COMMIT",
    "Dialect",
    "EngineFailure",
    "GroupCommitter",
    "Job",
    "Outcome",
    "Rows",
    "RuleError",
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
