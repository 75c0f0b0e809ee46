"""What the dashboard reads from the census store: a read-only query interface.

``StaffQueries`` is engine-neutral; ``SqliteStaffQueries`` implements it on its
OWN read-only connection to the census SQLite file (``mode=ro`` and
``query_only``), so the dashboard can neither write census tables nor
compete with the ingest writer for its connection; ``PgStaffQueries``
(``queries_postgres``) implements it on the PostgreSQL census store.
``make_queries`` picks the one for the configured database.

Batches and sheets are insert-only, so the dashboard reads them
incrementally by batch id (``batches_after``); everything else is small and
read whole on each refresh.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from .db import ThreadOwnedConnection
from .errors import StaffConfigError, StaffStoreError

__all__ = [
    "BatchRow",
    "CertifiableSheet",
    "CustodyPull",
    "CaseSheet",
    "ExportedSheet",
    "PersonRow",
    "ReasonCount",
    "ReviewCaseRow",
    "SecurityEventRow",
    "SqliteStaffQueries",
    "StaffQueries",
    "make_queries",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: int
    device_id: str
    seq: int
    received_at_ms: int
    road: str
    sheets_accepted: int
    sheets_quarantined: int


@dataclass(frozen=True, slots=True)
class SecurityEventRow:
    at_ms: int
    kind: str
    device_id: str | None
    seq: int | None
    detail: dict[str, object]


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class CustodyPull:
    station_id: str
    device_id: str
    pulled_at_ms: int
    received_at_ms: int
    batch_count: int


@dataclass(frozen=True, slots=True)
class ExportedSheet:
    """One stored sheet with its batch provenance; ``body_json`` is the stored canonical JSON text."""

    batch_id: int
    index: int
    device_id: str
    seq: int
    received_at_ms: int
    road: str
    batch_hash: bytes
    sheet_id: str | None
    body_json: str


@dataclass(frozen=True, slots=True)
class PersonRow:
    """A counted list entry (census ``persons``): the first stored sheet naming it."""

    id: int
    institution_code: str
    entry_id: str
    batch_id: int
    index: int
    road: str
    source: str
    region: str
    device_id: str
    received_at_ms: int
    person_key: str | None = None


@dataclass(frozen=True, slots=True)
class CaseSheet:
    """One sheet of a review case with its provenance; ``body_json`` only when asked for (it holds names)."""

    batch_id: int
    index: int
    device_id: str
    seq: int
    road: str
    received_at_ms: int
    sealed_at_ms: int
    entry_id: str | None
    source: str
    body_json: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewCaseRow:
    id: int
    kind: str  # "same-entry" | "possible-duplicate"
    institution_code: str
    entry_id: str  # the first sheet's entry
    opened_at_ms: int
    first: CaseSheet
    second: CaseSheet


@dataclass(frozen=True, slots=True)
class CertifiableSheet:
    """The first stored sheet of one respondent (list entry, else sheet id) and its batch's road and time."""

    sheet_id: str | None
    list_entry: str | None
    road: str
    received_at_ms: int


class StaffQueries(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def change_marker(self) -> int:
        """A number that changes whenever the census data changed (cheap; polled every refresh)."""
        ...

    async def batches_after(self, after_id: int, limit: int) -> list[BatchRow]:
        """Batches with id > after_id in id order, at most ``limit``."""
        ...

    async def list_entries_between(self, after_id: int, upto_id: int) -> list[tuple[str, str]]:
        """(institution_code, respondent_list_entry) of sheets in batches after_id < id <= upto_id."""
        ...

    async def security_events(self, limit: int) -> tuple[dict[str, int], list[SecurityEventRow]]:
        """Counts by kind, and the newest ``limit`` events."""
        ...

    async def quarantine_reasons(self) -> list[ReasonCount]: ...

    async def custody_pulls(self, limit: int) -> list[CustodyPull]: ...

    async def custody_last_seen(self) -> dict[str, int]:
        """Per station: the newest custody record's receive time."""
        ...

    async def export_sheets(self, after: tuple[int, int], limit: int) -> list[ExportedSheet]:
        """Stored sheets after (batch_id, index) in that order, at most ``limit``."""
        ...

    async def persons_after(self, after_id: int, limit: int) -> list[PersonRow]:
        """Counted entries with id > after_id in id order (insert-only, so read incrementally)."""
        ...

    async def quarantined_entries(self) -> dict[str, set[str]]:
        """Per institution, the list entries named by quarantined sheets (candidates for a revisit)."""
        ...

    async def review_cases(self) -> list[ReviewCaseRow]:
        """Every review case with both sheets' provenance (no bodies), oldest first."""
        ...

    async def review_case(self, case_id: int) -> ReviewCaseRow | None:
        """One case with both sheets' bodies, or None."""
        ...

    async def sheet_body(self, batch_id: int, index: int) -> str | None:
        """The stored canonical JSON of one sheet, or None."""
        ...

    async def certified_institutions(self) -> list[tuple[str, int]]:
        """(institution_code, respondents with a stored sheet), by code."""
        ...

    async def certifiable_sheets(self, institution_code: str, limit: int) -> list[CertifiableSheet]:
        """One row per respondent of the institution (its earliest stored sheet), earliest first."""
        ...

    async def certifiable_sheet(self, sheet_id: str) -> CertifiableSheet | None:
        """The earliest stored sheet with this sheet id (any form, any road), or None."""
        ...


class SqliteStaffQueries:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._owner = ThreadOwnedConnection("staff-census-read", "census read connection")

    async def open(self) -> None:
        await self._owner.open(self._connect)

    def _connect(self) -> sqlite3.Connection:
        uri = f"{self._path.resolve().as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("SELECT count(*) FROM batches").fetchone()
        except sqlite3.Error as e:
            raise StaffStoreError(f"cannot open the census database read-only: {e}") from e
        return conn

    async def close(self) -> None:
        await self._owner.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._owner.run(fn)

    async def change_marker(self) -> int:
        return await self._run(lambda c: int(c.execute("PRAGMA data_version").fetchone()[0]))

    async def batches_after(self, after_id: int, limit: int) -> list[BatchRow]:
        def run(c: sqlite3.Connection) -> list[BatchRow]:
            rows = c.execute(
                "SELECT id, device_id, seq, received_at_ms, road, sheets_accepted, sheets_quarantined"
                " FROM batches WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
            return [BatchRow(*r) for r in rows]

        return await self._run(run)

    async def list_entries_between(self, after_id: int, upto_id: int) -> list[tuple[str, str]]:
        def run(c: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = c.execute(
                "SELECT institution_code, respondent_list_entry FROM sheets"
                " WHERE batch_id > ? AND batch_id <= ?"
                " AND institution_code IS NOT NULL AND respondent_list_entry IS NOT NULL",
                (after_id, upto_id),
            ).fetchall()
            return [(r[0], r[1]) for r in rows]

        return await self._run(run)

    async def security_events(self, limit: int) -> tuple[dict[str, int], list[SecurityEventRow]]:
        def run(c: sqlite3.Connection) -> tuple[dict[str, int], list[SecurityEventRow]]:
            counts = dict(c.execute("SELECT kind, count(*) FROM security_events GROUP BY kind"))
            rows = c.execute(
                "SELECT at_ms, kind, device_id, seq, detail FROM security_events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            return counts, [SecurityEventRow(r[0], r[1], r[2], r[3], _detail(r[4])) for r in rows]

        return await self._run(run)

    async def quarantine_reasons(self) -> list[ReasonCount]:
        def run(c: sqlite3.Connection) -> list[ReasonCount]:
            rows = c.execute(
                "SELECT reason, count(*) AS n FROM quarantine GROUP BY reason ORDER BY n DESC, reason"
            ).fetchall()
            return [ReasonCount(r[0], r[1]) for r in rows]

        return await self._run(run)

    async def custody_pulls(self, limit: int) -> list[CustodyPull]:
        def run(c: sqlite3.Connection) -> list[CustodyPull]:
            rows = c.execute(
                "SELECT station_id, device_id, pulled_at_ms, received_at_ms, batch_count FROM custody"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [CustodyPull(*r) for r in rows]

        return await self._run(run)

    async def custody_last_seen(self) -> dict[str, int]:
        def run(c: sqlite3.Connection) -> dict[str, int]:
            return dict(c.execute("SELECT station_id, max(received_at_ms) FROM custody GROUP BY 1"))

        return await self._run(run)

    async def export_sheets(self, after: tuple[int, int], limit: int) -> list[ExportedSheet]:
        def run(c: sqlite3.Connection) -> list[ExportedSheet]:
            rows = c.execute(
                "SELECT s.batch_id, s.idx, b.device_id, b.seq, b.received_at_ms, b.road, b.batch_hash,"
                " s.sheet_id, s.body FROM sheets s JOIN batches b ON b.id = s.batch_id"
                " WHERE (s.batch_id, s.idx) > (?, ?) ORDER BY s.batch_id, s.idx LIMIT ?",
                (after[0], after[1], limit),
            ).fetchall()
            return [ExportedSheet(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8]) for r in rows]

        return await self._run(run)

    async def persons_after(self, after_id: int, limit: int) -> list[PersonRow]:
        def run(c: sqlite3.Connection) -> list[PersonRow]:
            rows = c.execute(
                "SELECT p.id, p.institution_code, p.entry_id, p.batch_id, p.idx, p.road, p.source, p.region,"
                " b.device_id, b.received_at_ms, p.person_key FROM persons p JOIN batches b ON b.id = p.batch_id"
                " WHERE p.id > ? ORDER BY p.id LIMIT ?",
                (after_id, limit),
            ).fetchall()
            return [PersonRow(*r) for r in rows]

        return await self._run(run)

    async def quarantined_entries(self) -> dict[str, set[str]]:
        def run(c: sqlite3.Connection) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            rows = c.execute(
                "SELECT DISTINCT json_extract(body, '$.institution_code'),"
                " json_extract(body, '$.respondent_list_entry') FROM quarantine"
                " WHERE json_valid(body) AND json_type(body) = 'object'"
            )
            for code, entry in rows:
                if isinstance(code, str) and isinstance(entry, str):
                    out.setdefault(code, set()).add(entry)
            return out

        return await self._run(run)

    async def review_cases(self) -> list[ReviewCaseRow]:
        return await self._run(lambda c: [_case(r, bodies=False) for r in c.execute(_CASES + " ORDER BY r.id")])

    async def review_case(self, case_id: int) -> ReviewCaseRow | None:
        def run(c: sqlite3.Connection) -> ReviewCaseRow | None:
            row = c.execute(_CASES + " WHERE r.id = ?", (case_id,)).fetchone()
            return None if row is None else _case(row, bodies=True)

        return await self._run(run)


    async def sheet_body(self, batch_id: int, index: int) -> str | None:
        def run(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT body FROM sheets WHERE batch_id = ? AND idx = ?", (batch_id, index)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(run)

    async def certified_institutions(self) -> list[tuple[str, int]]:
        def run(c: sqlite3.Connection) -> list[tuple[str, int]]:
            rows = c.execute(
                "SELECT institution_code, count(DISTINCT coalesce('entry:' || respondent_list_entry,"
                " 'sheet:' || sheet_id)) FROM sheets WHERE institution_code IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
            return [(r[0], r[1]) for r in rows]

        return await self._run(run)

    async def certifiable_sheets(self, institution_code: str, limit: int) -> list[CertifiableSheet]:
        def run(c: sqlite3.Connection) -> list[CertifiableSheet]:
            # SQLite: the bare columns come from the row holding min(...), i.e. the respondent's first sheet.
            rows = c.execute(
                "SELECT s.sheet_id, s.respondent_list_entry, b.road, b.received_at_ms,"
                " min(s.batch_id * 1000000 + s.idx) FROM sheets s JOIN batches b ON b.id = s.batch_id"
                " WHERE s.institution_code = ?"
                " GROUP BY coalesce('entry:' || s.respondent_list_entry, 'sheet:' || s.sheet_id)"
                " ORDER BY 5 LIMIT ?",
                (institution_code, limit),
            ).fetchall()
            return [CertifiableSheet(r[0], r[1], r[2], r[3]) for r in rows]

        return await self._run(run)

    async def certifiable_sheet(self, sheet_id: str) -> CertifiableSheet | None:
        def run(c: sqlite3.Connection) -> CertifiableSheet | None:
            r = c.execute(
                "SELECT s.sheet_id, s.respondent_list_entry, b.road, b.received_at_ms FROM sheets s"
                " JOIN batches b ON b.id = s.batch_id WHERE s.sheet_id = ? ORDER BY s.batch_id, s.idx LIMIT 1",
                (sheet_id,),
            ).fetchone()
            return None if r is None else CertifiableSheet(r[0], r[1], r[2], r[3])

        return await self._run(run)


_SIDE = "{b}.device_id, {b}.seq, {b}.road, {b}.received_at_ms, {b}.sealed_at_ms, {s}.respondent_list_entry, {s}.body"
_CASES = (
    "SELECT r.id, r.kind, r.institution_code, r.entry_id, r.opened_at_ms,"  # noqa: S608 - fixed aliases only
    " r.first_batch_id, r.first_idx, " + _SIDE.format(b="fb", s="fs") + ","
    " r.second_batch_id, r.second_idx, " + _SIDE.format(b="sb", s="ss") + " FROM review_cases r"
    " JOIN batches fb ON fb.id = r.first_batch_id"
    " JOIN sheets fs ON fs.batch_id = r.first_batch_id AND fs.idx = r.first_idx"
    " JOIN batches sb ON sb.id = r.second_batch_id"
    " JOIN sheets ss ON ss.batch_id = r.second_batch_id AND ss.idx = r.second_idx"
)


def _case_sheet(values: tuple[object, ...], *, bodies: bool) -> CaseSheet:
    batch_id, idx, device_id, seq, road, received, sealed, entry, body = values
    source = _detail(str(body)).get("source")
    return CaseSheet(
        batch_id=int(str(batch_id)),
        index=int(str(idx)),
        device_id=str(device_id),
        seq=int(str(seq)),
        road=str(road),
        received_at_ms=int(str(received)),
        sealed_at_ms=int(str(sealed)),
        entry_id=None if entry is None else str(entry),
        source=source if isinstance(source, str) else "",
        body_json=str(body) if bodies else None,
    )


def _case(row: tuple[object, ...], *, bodies: bool) -> ReviewCaseRow:
    head = row[:5]
    return ReviewCaseRow(
        id=int(str(head[0])),
        kind=str(head[1]),
        institution_code=str(head[2]),
        entry_id=str(head[3]),
        opened_at_ms=int(str(head[4])),
        first=_case_sheet(row[5:14], bodies=bodies),
        second=_case_sheet(row[14:23], bodies=bodies),
    )


def _detail(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def make_queries(database: str, census_sqlite_path: Path | None) -> StaffQueries:
    """The query implementation for the configured census store (``database`` is the gateway's URL)."""
    if census_sqlite_path is not None:
        return SqliteStaffQueries(census_sqlite_path)
    if not database.startswith(("postgresql://", "postgres://")):
        raise StaffConfigError(f"the staff dashboard cannot read this census store: {database.split(':', 1)[0]}")
    from .queries_postgres import PgStaffQueries  # noqa: PLC0415 - it imports this module

    return PgStaffQueries(database)
