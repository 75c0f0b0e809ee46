"""``StaffQueries`` on the PostgreSQL census store: the dashboard's census reads (ADR 0012).

One connection of its own, in read-only transactions
(``default_transaction_read_only``), so the dashboard can neither write
census tables nor take a connection from the ingest pool; a broken connection
is replaced on the next read.

Ids are not committed in order here: several instances (and one instance's
group commits) draw batch and person ids from one sequence and commit them
in any order, and a refused duplicate leaves a permanent gap (its id was
drawn, its row never written). Reading "everything after the last id seen"
could therefore step over a batch committed a moment later with a smaller
id. Only a transaction in progress when a read's snapshot was taken can
still fill a gap below that read's highest id (one that starts later draws a
higher id). So ``batches_after`` and ``persons_after`` read in one snapshot
together with its in-progress transaction ids (``pg_current_snapshot``), and
return rows past a gap only once it is proven final: when that snapshot had
no transaction in progress, or every transaction in progress at an earlier
read that already saw the gap has ended (``pg_xact_status``). An unproven
gap holds the rows after it back until the next refresh.
(The SQLite store has one writer, so ids commit in order.)

``change_marker`` is the sum of the newest ids of the insert-only tables the
dashboard shows: it changes whenever one of them gets a row; the feed also
wakes at once on the ``sanaq_census`` NOTIFY (``listen_postgres``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection

from gateway._schema_postgres import split_pool_params

from .db_postgres import describe_dsn, error_text
from .errors import StaffStoreError
from .queries import (
    _CASES,
    BatchRow,
    CertifiableSheet,
    CustodyPull,
    ExportedSheet,
    PersonRow,
    ReasonCount,
    ReviewCaseRow,
    SecurityEventRow,
    _case,
    _detail,
)

__all__ = ["PgStaffQueries", "settled_prefix"]

T = TypeVar("T")

_MARKER = (
    "SELECT coalesce((SELECT max(id) FROM batches), 0) + coalesce((SELECT max(id) FROM security_events), 0)"
    " + coalesce((SELECT max(id) FROM custody), 0) + coalesce((SELECT max(id) FROM persons), 0)"
    " + coalesce((SELECT max(id) FROM review_cases), 0)"
)


@dataclass(frozen=True, slots=True)
class _Witness:
    """A read's highest id and the transactions in progress at its snapshot."""

    high: int
    in_progress: tuple[str, ...]


def settled_prefix(after_id: int, ids: list[int], final_upto: int) -> int:
    """How many of ``ids`` (ascending, all > ``after_id``) to fold in: gaps at or below ``final_upto`` are final."""
    expected = after_id + 1
    for n, row_id in enumerate(ids):
        if row_id != expected and row_id > final_upto:
            return n
        expected = row_id + 1
    return len(ids)


class PgStaffQueries:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._witness: dict[str, _Witness] = {}
        self._held_back = 0  # reads that left rows for later: counted into change_marker
        self._conn: AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> AsyncConnection[Any]:
        conninfo, _ = split_pool_params(self._dsn)
        try:
            conn = await AsyncConnection.connect(
                conninfo, autocommit=True, application_name="sanaq-gateway-staff-read",
                options="-c default_transaction_read_only=on",
            )
            await conn.execute("SELECT count(*) FROM batches WHERE false")
        except psycopg.Error as e:
            raise StaffStoreError(
                f"cannot open the census read connection at {describe_dsn(self._dsn)}: {error_text(e)}"
            ) from e
        return conn

    async def open(self) -> None:
        self._conn = await self._connect()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _run(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        async with self._lock:
            if self._conn is None or self._conn.broken or self._conn.closed:
                self._conn = await self._connect()
            try:
                return await fn(self._conn)
            except psycopg.Error as e:
                raise StaffStoreError(f"census read failed: {error_text(e)}") from e

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async def run(c: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await c.execute(sql, params)
            return await cur.fetchall()

        return await self._run(run)

    async def change_marker(self) -> int:
        """Moves with every insert, and after every read that held rows back (so the feed reads again)."""
        return int((await self._rows(_MARKER))[0][0]) + self._held_back

    async def _settled(self, key: str, sql: str, after_id: int, limit: int) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (params: after id, limit; the id first) up to the first gap not proven final."""

        async def run(c: AsyncConnection[Any]) -> tuple[list[tuple[Any, ...]], tuple[str, ...], bool]:
            async with c.transaction():
                await c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur = await c.execute("SELECT array(SELECT pg_snapshot_xip(pg_current_snapshot()))::text[]")
                snap = await cur.fetchone()
                cur = await c.execute(sql, (after_id, limit))
                rows = await cur.fetchall()
            xip = tuple(snap[0]) if snap and snap[0] else ()
            witness = self._witness.get(key)
            ended = True
            if witness is not None and witness.in_progress:
                cur = await c.execute(
                    "SELECT count(*) FROM unnest(%s::xid8[]) AS x WHERE pg_xact_status(x) = 'in progress'",
                    (list(witness.in_progress),),
                )
                still = await cur.fetchone()
                ended = still is None or int(still[0]) == 0
            return rows, xip, ended

        rows, xip, ended = await self._run(run)
        witness = self._witness.get(key)
        if not xip:
            final_upto = rows[-1][0] if rows else after_id
        elif witness is not None and ended:
            final_upto = witness.high
        else:
            final_upto = after_id
        if witness is None or ended:
            self._witness[key] = _Witness(int(rows[-1][0]) if rows else after_id, xip)
        n = settled_prefix(after_id, [int(r[0]) for r in rows], int(final_upto))
        if n < len(rows):
            self._held_back += 1
        return rows[:n]

    async def batches_after(self, after_id: int, limit: int) -> list[BatchRow]:
        rows = await self._settled(
            "batches",
            "SELECT id, device_id, seq, received_at_ms, road, sheets_accepted, sheets_quarantined"
            " FROM batches WHERE id > %s ORDER BY id LIMIT %s",
            after_id,
            limit,
        )
        return [BatchRow(*r) for r in rows]

    async def list_entries_between(self, after_id: int, upto_id: int) -> list[tuple[str, str]]:
        rows = await self._rows(
            "SELECT institution_code, respondent_list_entry FROM sheets WHERE batch_id > %s AND batch_id <= %s"
            " AND institution_code IS NOT NULL AND respondent_list_entry IS NOT NULL",
            (after_id, upto_id),
        )
        return [(r[0], r[1]) for r in rows]

    async def security_events(self, limit: int) -> tuple[dict[str, int], list[SecurityEventRow]]:
        counts = {r[0]: int(r[1]) for r in await self._rows("SELECT kind, count(*) FROM security_events GROUP BY kind")}
        rows = await self._rows(
            "SELECT at_ms, kind, device_id, seq, detail FROM security_events ORDER BY id DESC LIMIT %s", (limit,)
        )
        return counts, [SecurityEventRow(r[0], r[1], r[2], r[3], _detail(r[4])) for r in rows]

    async def quarantine_reasons(self) -> list[ReasonCount]:
        rows = await self._rows("SELECT reason, count(*) AS n FROM quarantine GROUP BY reason ORDER BY n DESC, reason")
        return [ReasonCount(r[0], int(r[1])) for r in rows]

    async def custody_pulls(self, limit: int) -> list[CustodyPull]:
        rows = await self._rows(
            "SELECT station_id, device_id, pulled_at_ms, received_at_ms, batch_count FROM custody"
            " ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [CustodyPull(*r) for r in rows]

    async def custody_last_seen(self) -> dict[str, int]:
        rows = await self._rows("SELECT station_id, max(received_at_ms) FROM custody GROUP BY 1")
        return {r[0]: int(r[1]) for r in rows}

    async def export_sheets(self, after: tuple[int, int], limit: int) -> list[ExportedSheet]:
        rows = await self._rows(
            "SELECT s.batch_id, s.idx, b.device_id, b.seq, b.received_at_ms, b.road, b.batch_hash,"
            " s.sheet_id, s.body FROM sheets s JOIN batches b ON b.id = s.batch_id"
            " WHERE (s.batch_id, s.idx) > (%s, %s) ORDER BY s.batch_id, s.idx LIMIT %s",
            (after[0], after[1], limit),
        )
        return [ExportedSheet(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8]) for r in rows]

    async def persons_after(self, after_id: int, limit: int) -> list[PersonRow]:
        rows = await self._settled(
            "persons",
            "SELECT p.id, p.institution_code, p.entry_id, p.batch_id, p.idx, p.road, p.source, p.region,"
            " b.device_id, b.received_at_ms, p.person_key FROM persons p"
            " JOIN batches b ON b.id = p.batch_id WHERE p.id > %s ORDER BY p.id LIMIT %s",
            after_id,
            limit,
        )
        return [PersonRow(*r) for r in rows]

    async def quarantined_entries(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        # PostgreSQL 15 has no "IS JSON": a quarantined body may not be JSON, so it is parsed here.
        for (body,) in await self._rows("SELECT body FROM quarantine WHERE body LIKE '{%%'"):
            value = _detail(str(body))
            code, entry = value.get("institution_code"), value.get("respondent_list_entry")
            if isinstance(code, str) and isinstance(entry, str):
                out.setdefault(code, set()).add(entry)
        return out

    async def review_cases(self) -> list[ReviewCaseRow]:
        return [_case(r, bodies=False) for r in await self._rows(_CASES + " ORDER BY r.id")]

    async def review_case(self, case_id: int) -> ReviewCaseRow | None:
        rows = await self._rows(_CASES + " WHERE r.id = %s", (case_id,))
        return _case(rows[0], bodies=True) if rows else None

    async def sheet_body(self, batch_id: int, index: int) -> str | None:
        rows = await self._rows("SELECT body FROM sheets WHERE batch_id = %s AND idx = %s", (batch_id, index))
        return str(rows[0][0]) if rows else None

    async def certified_institutions(self) -> list[tuple[str, int]]:
        rows = await self._rows(
            "SELECT institution_code, count(DISTINCT coalesce('entry:' || respondent_list_entry,"
            " 'sheet:' || sheet_id)) FROM sheets WHERE institution_code IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
        return [(r[0], int(r[1])) for r in rows]

    async def certifiable_sheets(self, institution_code: str, limit: int) -> list[CertifiableSheet]:
        rows = await self._rows(
            "SELECT sheet_id, respondent_list_entry, road, received_at_ms FROM ("
            " SELECT DISTINCT ON (coalesce('entry:' || s.respondent_list_entry, 'sheet:' || s.sheet_id))"
            " s.sheet_id, s.respondent_list_entry, b.road, b.received_at_ms, s.batch_id, s.idx"
            " FROM sheets s JOIN batches b ON b.id = s.batch_id WHERE s.institution_code = %s"
            " ORDER BY coalesce('entry:' || s.respondent_list_entry, 'sheet:' || s.sheet_id), s.batch_id, s.idx"
            ") AS firsts ORDER BY batch_id, idx LIMIT %s",
            (institution_code, limit),
        )
        return [CertifiableSheet(r[0], r[1], r[2], r[3]) for r in rows]

    async def certifiable_sheet(self, sheet_id: str) -> CertifiableSheet | None:
        rows = await self._rows(
            "SELECT s.sheet_id, s.respondent_list_entry, b.road, b.received_at_ms FROM sheets s"
            " JOIN batches b ON b.id = s.batch_id WHERE s.sheet_id = %s ORDER BY s.batch_id, s.idx LIMIT 1",
            (sheet_id,),
        )
        return CertifiableSheet(*rows[0]) if rows else None
