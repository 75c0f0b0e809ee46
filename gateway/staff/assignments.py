"""Tablets' assignments: each institution's first-stage list with every entry's status, versioned.

The status of an entry comes from the held list (staff.db), the persons the
census store counted after the staff's review decisions, and the
quarantined sheets. Neutral statuses are kept per entry in staff.db
(``assignment_status``); each request compares the current statuses with the
held ones and gives every changed entry the institution's next version
(``assignment_versions``), in one staff.db transaction. So the version only
grows, and a delta ``since`` V lists exactly the entries changed after V
(an entry gone from the list is kept as ``withdrawn``). The status is then
rendered for the asking tablet: an entry counted by a tablet is
``enumerated-here`` for that tablet and ``enumerated-elsewhere`` for the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from gateway.errors import Unavailable
from wire.assignments import Assignment

from .db import StaffConn, StaffStorage, transaction
from .errors import StaffStoreError
from .feed import DashboardFeed
from .lists import load_entries
from .review import Counted

__all__ = ["StaffAssignments", "sync_assignments"]

_Row = tuple[str, str, int | None, str, str, str, str]  # status, device, at_ms, surname, given, patronymic, birth


def _neutral(counted: Counted | None, revisit: bool) -> tuple[str, str, int | None]:
    if counted is not None:
        if counted.road.startswith("web:"):
            return "online", "", counted.received_at_ms
        return "tablet", counted.device_id, counted.received_at_ms
    return ("revisit", "", None) if revisit else ("open", "", None)


def _render(entry_id: str, row: _Row, version: int, device_id: str) -> Assignment:
    status, device, at_ms, surname, given, patronymic, birth = row
    shown = {
        "online": "enumerated-online",
        "tablet": "enumerated-here" if device == device_id else "enumerated-elsewhere",
        "revisit": "needs-revisit",
        "open": "open",
        "withdrawn": "withdrawn",
    }[status]
    return Assignment(
        entry_id, shown, at_ms if status in ("online", "tablet") else None, surname, given, patronymic, birth, version
    )


def sync_assignments(
    conn: StaffConn,
    *,
    institution: str,
    counted: Mapping[str, Counted],
    revisit: Set[str],
    device_id: str,
    since: int,
) -> tuple[int, int, list[Assignment]]:
    """Bring ``institution``'s held statuses up to date; returns (version, since used, entries for the tablet)."""
    with transaction(conn):
        current: dict[str, _Row] = {}
        for e in load_entries(conn, institution):
            status, device, at_ms = _neutral(counted.get(e.entry_id), e.entry_id in revisit)
            current[e.entry_id] = (status, device, at_ms, e.surname, e.given_name, e.patronymic, e.birth_date)
        held: dict[str, _Row] = {
            r[0]: tuple(r[1:8])
            for r in conn.execute(
                "SELECT entry_id, status, device_id, at_ms, surname, given_name, patronymic, birth_date"
                " FROM assignment_status WHERE institution_code = ?",
                (institution,),
            )
        }
        for entry_id, row in held.items():
            if entry_id not in current and row[0] != "withdrawn":
                current[entry_id] = ("withdrawn", "", None, "", "", "", "")
        changed = {k: v for k, v in current.items() if held.get(k) != v}
        got = conn.execute(
            "SELECT version FROM assignment_versions WHERE institution_code = ?", (institution,)
        ).fetchone()
        version = int(got[0]) if got else 0
        if changed:
            version += 1
            conn.executemany(
                "INSERT INTO assignment_status VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (institution_code, entry_id) DO UPDATE SET status = excluded.status,"
                " device_id = excluded.device_id, at_ms = excluded.at_ms, surname = excluded.surname,"
                " given_name = excluded.given_name, patronymic = excluded.patronymic,"
                " birth_date = excluded.birth_date, version = excluded.version",
                [(institution, k, *v, version) for k, v in changed.items()],
            )
            conn.execute(
                "INSERT INTO assignment_versions VALUES (?, ?)"
                " ON CONFLICT (institution_code) DO UPDATE SET version = excluded.version",
                (institution, version),
            )
    if since > version:  # the tablet holds a version this gateway never issued: start again whole
        since = 0
    rows = conn.execute(
        "SELECT entry_id, status, device_id, at_ms, surname, given_name, patronymic, birth_date, version"
        " FROM assignment_status WHERE institution_code = ? AND version > ? ORDER BY entry_id",
        (institution, since),
    ).fetchall()
    out = [_render(r[0], tuple(r[1:8]), r[8], device_id) for r in rows if not (since == 0 and r[1] == "withdrawn")]
    return version, since, out


class StaffAssignments:
    """The gateway's assignments source when the staff dashboard (which holds the lists) runs in it."""

    def __init__(self, db: StaffStorage, feed: DashboardFeed, *, retry_after_s: int = 5) -> None:
        self._db = db
        self._feed = feed
        self._retry_after_s = retry_after_s

    async def assignments(self, *, institution: str, device_id: str, since: int) -> tuple[int, int, list[Assignment]]:
        """Raises ``Unavailable`` (503) when staff.db or the census read connection fails."""
        try:
            await self._feed.current()
            counted = self._feed.effective.get(institution, {})
            revisit = frozenset(self._feed.revisit.get(institution, ()))
            return await self._db.run(
                lambda c: sync_assignments(
                    c, institution=institution, counted=counted, revisit=revisit, device_id=device_id, since=since
                )
            )
        except StaffStoreError as e:
            raise Unavailable(f"assignments cannot be read now: {e}", retry_after_s=self._retry_after_s) from e
