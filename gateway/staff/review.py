"""The review queue: staff decide the census store's review cases; decisions live in staff.db.

The census store opens a case (it never merges or drops a sheet): a
``same-entry`` case when a second sheet names a list entry already counted,
a ``possible-duplicate`` case when a sheet's person key (institution, surname,
given name, birth date, normalised) matches an earlier sheet of another entry.
A case is decided once, by a staff member, and the decision is recorded with
who and when (``review_decisions``, plus an ``audit`` row):

* ``keep-first``: the first sheet counts; the second is kept but counts for
  nothing (for a possible duplicate, the second sheet's entry is no longer
  counted by it).
* ``keep-second``: the second sheet counts instead of the first.
* ``different``: they are two people. For a same-entry case the
  institution's list gains an entry (the next free number, with the second
  sheet's person) and the second sheet counts it; for a possible duplicate
  whose second entry is not on the list, the list gains that entry.

``effective_persons`` applies the decisions to the store's counted entries,
oldest case first; coverage and the tablets' assignments count from it. A
decision is about its two sheets only: keeping one sheet uncounts the other
only where that other sheet is, at that point, what counts its entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from gateway.person_key import person_key
from l10n import N_

from .accounts import write_audit
from .db import StaffConn, transaction
from .errors import StaffInputError
from .queries import CaseSheet, PersonRow, ReviewCaseRow

__all__ = [
    "DECISIONS",
    "MATCH_DECISIONS",
    "Counted",
    "Decision",
    "ListMatch",
    "MatchDecision",
    "apply_match_decisions",
    "category",
    "decide",
    "decide_match",
    "effective_persons",
    "find_list_matches",
    "listed_keys",
    "load_decisions",
    "load_match_decisions",
]

DECISIONS = ("keep-first", "keep-second", "different")
MATCH_DECISIONS = ("same-person", "different")


@dataclass(frozen=True, slots=True)
class Decision:
    case_id: int
    decision: str
    institution_code: str
    new_entry_id: str | None
    decided_by: int
    decided_at_ms: int
    decided_by_name: str = ""


@dataclass(frozen=True, slots=True)
class Counted:
    """The sheet that counts one entry, after the staff's decisions."""

    batch_id: int
    index: int
    road: str
    source: str
    region: str
    device_id: str
    received_at_ms: int
    person_key: str | None = None

    @property
    def category(self) -> str:
        return category(self.road, self.source)


def category(road: str, source: str) -> str:
    """``online`` (the respondent answered on the web), ``records`` (administration records) or ``interviewed``."""
    if road.startswith("web:"):
        return "online"
    return "records" if source == "administration_records" else "interviewed"


def load_decisions(conn: StaffConn) -> dict[int, Decision]:
    rows = conn.execute(
        "SELECT d.case_id, d.decision, d.institution_code, d.new_entry_id, d.decided_by, d.decided_at_ms,"
        " coalesce(u.username, '') FROM review_decisions d LEFT JOIN users u ON u.id = d.decided_by"
    ).fetchall()
    return {r[0]: Decision(*r) for r in rows}


def _person(sheet: CaseSheet) -> dict[str, str]:
    body = json.loads(sheet.body_json or "{}")
    persons = body.get("persons") if isinstance(body, dict) else None
    person = persons[0] if isinstance(persons, list) and persons and isinstance(persons[0], dict) else {}
    return {
        k: person[k] for k in ("surname", "given_name", "patronymic", "birth_date") if isinstance(person.get(k), str)
    }


def _add_entry(conn: StaffConn, code: str, entry_id: str | None, sheet: CaseSheet) -> str:
    """Add the second sheet's person to ``code``'s list (as ``entry_id``, or the next free number)."""
    if conn.execute("SELECT 1 FROM respondent_lists WHERE institution_code = ?", (code,)).fetchone() is None:
        raise StaffInputError(
            N_("no respondent list is held for %(institution)s: import it first"), field="decision", institution=code
        )
    if entry_id is None:
        numbers = [
            int(e.rsplit("/", 1)[1])
            for (e,) in conn.execute("SELECT entry_id FROM respondent_entries WHERE institution_code = ?", (code,))
        ]
        held = conn.execute("SELECT new_entry_id FROM review_decisions WHERE institution_code = ?", (code,))
        numbers += [int(str(e).rsplit("/", 1)[1]) for (e,) in held if e]
        entry_id = f"{code}/{max(numbers, default=0) + 1:05d}"
        if int(entry_id.rsplit("/", 1)[1]) > 99_999:
            raise StaffInputError(N_("the list of %(institution)s has no free entry number left"), field="decision",
                                  institution=code)
    person = _person(sheet)
    if not {"surname", "given_name", "birth_date"} <= person.keys():
        raise StaffInputError(N_("the second sheet names no person to add to the list"), field="decision")
    conn.execute(
        "INSERT INTO respondent_entries (institution_code, entry_id, surname, given_name, patronymic, birth_date)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (code, entry_id, person["surname"], person["given_name"], person.get("patronymic", ""), person["birth_date"]),
    )
    conn.execute(
        "UPDATE respondent_lists SET entry_count = (SELECT count(*) FROM respondent_entries WHERE institution_code = ?)"
        " WHERE institution_code = ?",
        (code, code),
    )
    return entry_id


def decide(conn: StaffConn, case: ReviewCaseRow, decision: str, *, user_id: int, now_ms: int) -> Decision:
    """Record one staff decision on ``case`` (which must carry both bodies); a case is decided once."""
    if decision not in DECISIONS:
        # TRANSLATORS: keep-first, keep-second and different are the form's values: keep them in Latin letters
        raise StaffInputError(N_("decision must be keep-first, keep-second or different"), field="decision")
    code = case.institution_code
    with transaction(conn):
        if conn.execute("SELECT 1 FROM review_decisions WHERE case_id = ?", (case.id,)).fetchone() is not None:
            raise StaffInputError(N_("case %(case)s is already decided"), field="decision", case=case.id)
        new_entry: str | None = None
        if decision == "different":
            if case.kind == "same-entry":
                new_entry = _add_entry(conn, code, None, case.second)
            elif case.second.entry_id is not None:
                listed = conn.execute(
                    "SELECT 1 FROM respondent_entries WHERE institution_code = ? AND entry_id = ?",
                    (code, case.second.entry_id),
                ).fetchone()
                if listed is None:
                    new_entry = _add_entry(conn, code, case.second.entry_id, case.second)
        conn.execute(
            "INSERT INTO review_decisions (case_id, decision, institution_code, new_entry_id, decided_by,"
            " decided_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (case.id, decision, code, new_entry, user_id, now_ms),
        )
        write_audit(
            conn,
            now_ms,
            user_id,
            "review.decided",
            case=case.id,
            kind=case.kind,
            decision=decision,
            institution=code,
            new_entry=new_entry or "",
        )
    return Decision(case.id, decision, code, new_entry, user_id, now_ms)


def _counted(sheet: CaseSheet, region: str) -> Counted:
    return Counted(sheet.batch_id, sheet.index, sheet.road, sheet.source, region, sheet.device_id, sheet.received_at_ms)


def effective_persons(
    persons: Iterable[PersonRow], cases: Iterable[ReviewCaseRow], decisions: Mapping[int, Decision]
) -> dict[str, dict[str, Counted]]:
    """Per institution, per entry: the sheet that counts it once the decided cases are applied."""
    out: dict[str, dict[str, Counted]] = {}
    for p in persons:
        out.setdefault(p.institution_code, {})[p.entry_id] = Counted(
            p.batch_id, p.index, p.road, p.source, p.region, p.device_id, p.received_at_ms, p.person_key
        )
    for case in cases:
        d = decisions.get(case.id)
        if d is None:
            continue
        entries = out.setdefault(case.institution_code, {})
        held = entries.get(case.entry_id)
        region = held.region if held else ""
        first = (case.first.batch_id, case.first.index)
        second = (case.second.batch_id, case.second.index)
        if case.kind == "same-entry":
            if d.decision == "keep-second":
                entries[case.entry_id] = _counted(case.second, region)
            elif d.decision == "different" and d.new_entry_id:
                entries[d.new_entry_id] = _counted(case.second, region)
            continue
        other = case.second.entry_id
        if d.decision == "keep-first" and other is not None:
            by_second = entries.get(other)
            if by_second is not None and (by_second.batch_id, by_second.index) == second:
                del entries[other]
        elif d.decision == "keep-second" and held is not None and (held.batch_id, held.index) == first:
            del entries[case.entry_id]
    return out


# ---- off-list sheets that match a listed person ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListMatch:
    """A counted entry that is not on its institution's list, whose person key is a listed entry's."""

    institution_code: str
    entry_id: str  # off the list
    listed_entry_id: str
    counted: Counted


@dataclass(frozen=True, slots=True)
class MatchDecision:
    batch_id: int
    index: int
    decision: str
    listed_entry_id: str
    decided_by_name: str
    decided_at_ms: int


def listed_keys(conn: StaffConn) -> dict[str, dict[str, str]]:
    """Per institution: person key -> entry id of every listed respondent (the first entry per key)."""
    out: dict[str, dict[str, str]] = {}
    rows = conn.execute(
        "SELECT institution_code, entry_id, surname, given_name, birth_date FROM respondent_entries"
        " ORDER BY institution_code, entry_id"
    )
    for code, entry, surname, given, birth in rows:
        key = person_key(
            {
                "form": "institution",
                "institution_code": code,
                "persons": [{"surname": surname, "given_name": given, "birth_date": birth}],
            }
        )
        if key is not None:
            out.setdefault(code, {}).setdefault(key, entry)
    return out


def find_list_matches(
    counted: Mapping[str, Mapping[str, Counted]],
    list_entries: Mapping[str, Set[str]],
    keys: Mapping[str, Mapping[str, str]],
) -> list[ListMatch]:
    out: list[ListMatch] = []
    for code, entries in sorted(counted.items()):
        listed, by_key = list_entries.get(code, frozenset()), keys.get(code, {})
        for entry_id, c in sorted(entries.items()):
            if entry_id in listed or c.person_key is None or c.person_key not in by_key:
                continue
            out.append(ListMatch(code, entry_id, by_key[c.person_key], c))
    return out


def load_match_decisions(conn: StaffConn) -> dict[tuple[int, int], MatchDecision]:
    rows = conn.execute(
        "SELECT d.batch_id, d.idx, d.decision, d.listed_entry_id, coalesce(u.username, ''), d.decided_at_ms"
        " FROM list_match_decisions d LEFT JOIN users u ON u.id = d.decided_by"
    ).fetchall()
    return {(r[0], r[1]): MatchDecision(*r) for r in rows}


def decide_match(
    conn: StaffConn, match: ListMatch, decision: str, *, body_json: str, user_id: int, now_ms: int
) -> MatchDecision:
    """Record whether an off-list sheet is the listed person (``same-person``) or not (the list gains its entry)."""
    if decision not in MATCH_DECISIONS:
        # TRANSLATORS: same-person and different are the form's values: keep them in Latin letters
        raise StaffInputError(N_("decision must be same-person or different"), field="decision")
    sheet = (match.counted.batch_id, match.counted.index)
    with transaction(conn):
        held = conn.execute("SELECT 1 FROM list_match_decisions WHERE batch_id = ? AND idx = ?", sheet).fetchone()
        if held is not None:
            raise StaffInputError(N_("this sheet is already decided"), field="decision")
        if decision == "different":
            stand_in = CaseSheet(
                sheet[0],
                sheet[1],
                match.counted.device_id,
                0,
                match.counted.road,
                match.counted.received_at_ms,
                0,
                match.entry_id,
                match.counted.source,
                body_json,
            )
            _add_entry(conn, match.institution_code, match.entry_id, stand_in)
        conn.execute(
            "INSERT INTO list_match_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*sheet, match.institution_code, match.entry_id, match.listed_entry_id, decision, user_id, now_ms),
        )
        write_audit(
            conn,
            now_ms,
            user_id,
            "review.list_match_decided",
            institution=match.institution_code,
            entry=match.entry_id,
            listed_entry=match.listed_entry_id,
            decision=decision,
        )
    return MatchDecision(sheet[0], sheet[1], decision, match.listed_entry_id, "", now_ms)


def apply_match_decisions(
    counted: dict[str, dict[str, Counted]],
    matches: Iterable[ListMatch],
    decisions: Mapping[tuple[int, int], MatchDecision],
) -> None:
    """``same-person``: the sheet counts for the listed entry (once: not if another sheet counts it already)."""
    for m in matches:
        d = decisions.get((m.counted.batch_id, m.counted.index))
        if d is None or d.decision != "same-person":
            continue
        entries = counted.get(m.institution_code, {})
        if entries.get(m.entry_id) is m.counted:
            del entries[m.entry_id]
            entries.setdefault(m.listed_entry_id, m.counted)
