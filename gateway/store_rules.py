"""Every census-store rule, written once for both engines, and the store built from them.

Each rule (replay, duplicate vs conflict, quarantine, persons and review
cases, registry rollback, custody, the reads) is a generator of statements
(``store_commit.Sql``) that the engines drive on their own connections; the
write rules run as jobs of the shared ``GroupCommitter``. ``SharedStore`` is
the ``CensusStore`` made of them; an engine subclass adds its dialect, its
connections and its transactions. See docs/adr/0002-sqlite-group-commit.md
and, for persons and review cases, docs/adr/0004-one-count.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

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
)
from .store_commit import Dialect, GroupCommitter, Job, Outcome, RuleError, Sql, Step, group_transaction

__all__ = ["REGISTRY_CHANNEL", "SharedStore"]

T = TypeVar("T")


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
    implements ``_read`` (drive a rule on a reading connection); it may
    implement ``_lookup`` for the short indexed reads of the ingest path (by
    default ``_read``).
    """

    DIALECT: ClassVar[Dialect]
    PURGE_IN_GROUP: ClassVar[bool]
    _committer: GroupCommitter

    async def _read(self, rule: Callable[[], Step[T]]) -> T:
        raise NotImplementedError

    async def _lookup(self, rule: Callable[[], Step[T]]) -> T:
        """A short read by a unique index, once per batch (the idempotency lookup)."""
        return await self._read(rule)

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
        return await self._lookup(lambda: find_batch(device_id, seq))

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
