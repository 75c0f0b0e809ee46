"""Access codes minted on the staff dashboard, residents registered on the spot, and the change feed.

Codes are stored only as ``keys.access_codes.code_hash`` under the pepper
``codes.pepper`` (32 bytes, 0600, next to staff.db; created on first use).
The plaintext code exists only in the PDF answer to the request that minted
it. Every issue or revocation gives the code's row the next change
``version``; a web service polls the rows above the version it holds
(``GET /v1/web/access-codes/since/{version}``, docs/protocol.md section 9.2)
and so learns new codes and revocations in order.

Rules: one active code per list entry (a partial unique index); minting is
per institution and skips entries that already have one; where the list is
household-based (its ``household`` column), a household gets one code that
opens every member's sheet (``members``, entry order); re-issuing revokes
the active code and mints a new one in one transaction. A responsible worker
(an account bound to institutions in ``user_institutions``) acts only for
those institutions; an admin for all.

Registering an unlisted resident adds a list entry numbered from
``ADDITION_FIRST`` (90001) up, marked ``added_at_ms``: coverage counts it as
listed and, apart, as an addition; a re-import of the list keeps it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from keys.access_codes import code_hash, mint_code
from keys.files import atomic_write
from keys.slips import Slip
from l10n import N_
from wire import AccessCodeChange

from .accounts import StaffUser, write_audit
from .db import StaffConn, transaction
from .errors import StaffInputError
from .lists import ListEntry, clean_text

__all__ = [
    "ADDITION_FIRST",
    "CodeStatus",
    "Render",
    "Minted",
    "can_act_for",
    "code_changes",
    "code_statuses",
    "institutions_of",
    "load_pepper",
    "mint_codes",
    "register_resident",
    "reissue_code",
    "revoke_code",
    "set_institutions",
]

ADDITION_FIRST = 90001
_ADDITION_LAST = 99999
_PEPPER_BYTES = 32
_ENTRY = re.compile(r"[A-Z]{2}-[0-9]{6}/[0-9]{5}")
_CODE = re.compile(r"[A-Z]{2}-[0-9]{6}")
_WORKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EARLIEST_BIRTH = date(1880, 1, 1)


@dataclass(frozen=True, slots=True)
class Minted:
    """What one mint request made: the slips (plaintext codes, for the PDF only) and what was skipped."""

    institution_code: str
    slips: tuple[Slip, ...]
    skipped: int


@dataclass(frozen=True, slots=True)
class CodeStatus:
    entry_id: str
    name: str
    added: bool
    status: str  # "active" | "revoked" | "none"
    issued_at_ms: int | None
    household: str = ""


def load_pepper(path: Path) -> bytes:
    """The access-code pepper (created 0600 on first use); the web service must hold the same bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = os.urandom(_PEPPER_BYTES)
        atomic_write(path, data, mode=0o600)
    if len(data) != _PEPPER_BYTES:
        raise StaffInputError(f"{path} must hold exactly {_PEPPER_BYTES} bytes", field="codes.pepper")
    return data


# ---- who may act for an institution ----------------------------------------------------------


def institutions_of(conn: StaffConn, user_id: int) -> frozenset[str]:
    rows = conn.execute("SELECT institution_code FROM user_institutions WHERE user_id = ?", (user_id,))
    return frozenset(r[0] for r in rows)


def can_act_for(conn: StaffConn, user: StaffUser, institution_code: str) -> bool:
    """Admins act for every institution; a responsible worker for the institutions bound to the account."""
    return user.is_admin or institution_code in institutions_of(conn, user.id)


def set_institutions(conn: StaffConn, username: str, codes: list[str], *, now_ms: int) -> None:
    """Bind an account to institutions (replacing its bindings): it becomes their responsible worker."""
    for code in codes:
        if not _CODE.fullmatch(code):
            raise StaffInputError(N_("institution code must look like AB-123456"), field="institution")
    with transaction(conn):
        row = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise StaffInputError(N_("no such user"), field="username")
        conn.execute("DELETE FROM user_institutions WHERE user_id = ?", (row[0],))
        conn.executemany("INSERT INTO user_institutions VALUES (?, ?)", [(row[0], c) for c in sorted(set(codes))])
        write_audit(conn, now_ms, None, "user.institutions", username=username, institutions=sorted(set(codes)))


# ---- minting ---------------------------------------------------------------------------------


def _check_issue(institution_kind: str, worker_id: str, kinds: tuple[str, ...]) -> None:
    if institution_kind not in kinds:
        raise StaffInputError(N_("choose one of the census sheet's institution kinds"), field="institution_kind")
    if not _WORKER.fullmatch(worker_id):
        # TRANSLATORS: the responsible worker's id printed on the access-code slip
        raise StaffInputError(N_("worker id: 1-64 letters, digits, dots, hyphens or underscores"), field="worker_id")


def _next_version(conn: StaffConn) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM access_codes").fetchone()[0])


def _name(e: ListEntry) -> str:
    return " ".join(p for p in (e.surname, e.given_name, e.patronymic) if p)


_COVERS = "(c.entry_id = ? OR EXISTS (SELECT 1 FROM json_each(c.members) m WHERE m.value = ?))"


def _insert_code(conn: StaffConn, pepper: bytes, group: list[ListEntry], *, institution_kind: str,
                 worker_id: str, user_id: int, now_ms: int) -> Slip:
    """One code opening ``group`` (one person, or every member of a household); its slip."""
    code = mint_code()
    members = json.dumps([e.entry_id for e in group]) if len(group) > 1 else None
    first = group[0]
    conn.execute(
        "INSERT INTO access_codes (code_hash, entry_id, institution_code, institution_kind, worker_id, status,"
        " issued_at_ms, issued_by, version, members) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)",
        (code_hash(pepper, code), first.entry_id, first.institution_code, institution_kind, worker_id, now_ms,
         user_id, _next_version(conn), members),
    )
    if len(group) == 1:
        return Slip(first.entry_id, _name(first), code)
    names = "; ".join(f"{e.entry_id.rsplit('/', 1)[1]} {_name(e)}" for e in group)
    return Slip(f"{first.entry_id} +{len(group) - 1}", names, code)


def _entries(conn: StaffConn, institution_code: str, entry_id: str | None = None
             ) -> list[tuple[ListEntry, str]]:
    """The institution's entries with their household ("" for none)."""
    sql = ("SELECT institution_code, entry_id, surname, given_name, patronymic, birth_date, COALESCE(household, '')"
           " FROM respondent_entries WHERE institution_code = ?")
    args: tuple[str, ...] = (institution_code,)
    if entry_id is not None:
        sql += " AND entry_id = ?"
        args += (entry_id,)
    return [(ListEntry(*r[:6]), r[6]) for r in conn.execute(sql + " ORDER BY entry_id", args)]


def _groups(entries: list[tuple[ListEntry, str]]) -> list[list[ListEntry]]:
    """One group per person without a household and one per household (members in entry order)."""
    groups: list[list[ListEntry]] = []
    households: dict[str, list[ListEntry]] = {}
    for e, household in entries:
        if not household:
            groups.append([e])
        elif household in households:
            households[household].append(e)
        else:
            households[household] = [e]
            groups.append(households[household])
    return groups


def _covered(conn: StaffConn, institution_code: str) -> set[str]:
    """Entries an active code opens."""
    out: set[str] = set()
    for entry_id, members in conn.execute(
            "SELECT entry_id, members FROM access_codes WHERE institution_code = ? AND status = 'active'",
            (institution_code,)):
        out.update(json.loads(members) if members else [entry_id])
    return out


Render = Callable[[str, list[Slip]], bytes]


def mint_codes(conn: StaffConn, pepper: bytes, user: StaffUser, institution_code: str, *,
               institution_kind: str, worker_id: str, kinds: tuple[str, ...], now_ms: int,
               render: Render) -> tuple[Minted, bytes]:
    """One new code per person (or household) of the institution's list not opened by an active code; the PDF.

    The PDF is rendered before the transaction commits: if it cannot be made, no code was minted.
    """
    _check_issue(institution_kind, worker_id, kinds)
    with transaction(conn):
        if not can_act_for(conn, user, institution_code):
            raise StaffInputError(N_("you are not a responsible worker of this institution"), field="institution")
        entries = _entries(conn, institution_code)
        if not entries:
            raise StaffInputError(N_("no list is held for this institution"), field="institution")
        have = _covered(conn, institution_code)
        slips = []
        for group in _groups(entries):
            todo = [e for e in group if e.entry_id not in have]
            if todo:
                slips.append(_insert_code(conn, pepper, todo, institution_kind=institution_kind, worker_id=worker_id,
                                          user_id=user.id, now_ms=now_ms))
        if not slips:
            raise StaffInputError(N_("every entry of this list already has an active code"), field="institution")
        write_audit(conn, now_ms, user.id, "codes.minted", institution=institution_code, codes=len(slips))
        pdf = render(institution_code, slips)
    return Minted(institution_code, tuple(slips), len(entries) - len(have)), pdf


def _entry_checked(conn: StaffConn, user: StaffUser, entry_id: str) -> tuple[ListEntry, str]:
    if not _ENTRY.fullmatch(entry_id):
        raise StaffInputError(N_("entry id must look like AB-123456/00042"), field="entry_id")
    institution = entry_id.split("/", 1)[0]
    if not can_act_for(conn, user, institution):
        raise StaffInputError(N_("you are not a responsible worker of this institution"), field="entry_id")
    found = _entries(conn, institution, entry_id)
    if not found:
        raise StaffInputError(N_("no such entry on the held list"), field="entry_id")
    return found[0]


def _revoke_covering(conn: StaffConn, entry_id: str, now_ms: int) -> int:
    """Revoke the active code that opens ``entry_id`` (its own, or its household's)."""
    row = conn.execute(f"SELECT code_hash FROM access_codes c WHERE c.status = 'active' AND {_COVERS}",  # noqa: S608
                       (entry_id, entry_id)).fetchone()
    if row is None:
        return 0
    return conn.execute(
        "UPDATE access_codes SET status = 'revoked', revoked_at_ms = ?, version = ? WHERE code_hash = ?",
        (now_ms, _next_version(conn), row[0])).rowcount


def revoke_code(conn: StaffConn, user: StaffUser, entry_id: str, *, now_ms: int) -> None:
    """Revoke the code that opens the entry (for a household: the household's one code)."""
    with transaction(conn):
        _entry_checked(conn, user, entry_id)
        if _revoke_covering(conn, entry_id, now_ms) == 0:
            raise StaffInputError(N_("this entry has no active code"), field="entry_id")
        write_audit(conn, now_ms, user.id, "codes.revoked", entry_id=entry_id)


def reissue_code(conn: StaffConn, pepper: bytes, user: StaffUser, entry_id: str, *,
                 institution_kind: str, worker_id: str, kinds: tuple[str, ...], now_ms: int,
                 render: Render) -> bytes:
    """Revoke the code opening the entry (if any) and mint a new one for the entry, or for its whole household.

    One transaction, two change versions; returns the one-slip PDF, rendered before the commit."""
    _check_issue(institution_kind, worker_id, kinds)
    with transaction(conn):
        entry, household = _entry_checked(conn, user, entry_id)
        group = [entry]
        if household:
            group = [e for e, h in _entries(conn, entry.institution_code) if h == household]
        for member in group:
            _revoke_covering(conn, member.entry_id, now_ms)
        slip = _insert_code(conn, pepper, group, institution_kind=institution_kind, worker_id=worker_id,
                            user_id=user.id, now_ms=now_ms)
        write_audit(conn, now_ms, user.id, "codes.reissued", entry_id=entry_id)
        return render(entry.institution_code, [slip])


def code_statuses(conn: StaffConn, institution_code: str) -> list[CodeStatus]:
    """Every entry of the institution's list with the state of the newest code opening it (for the codes page)."""
    newest = f"FROM access_codes c WHERE {_COVERS.replace('?', 'e.entry_id')} ORDER BY c.version DESC LIMIT 1"
    rows = conn.execute(
        "SELECT e.entry_id, e.surname, e.given_name, e.patronymic, e.added_at_ms IS NOT NULL,"  # noqa: S608
        f" (SELECT status {newest}), (SELECT issued_at_ms {newest}), COALESCE(e.household, '')"
        " FROM respondent_entries e WHERE e.institution_code = ? ORDER BY e.entry_id", (institution_code,))
    return [CodeStatus(r[0], " ".join(p for p in r[1:4] if p), bool(r[4]), r[5] or "none", r[6], r[7]) for r in rows]


# ---- registering an unlisted resident --------------------------------------------------------


def register_resident(conn: StaffConn, pepper: bytes, user: StaffUser, institution_code: str,
                      fields: dict[str, str], *, institution_kind: str, worker_id: str, kinds: tuple[str, ...],
                      now_ms: int, render: Render) -> tuple[ListEntry, bytes]:
    """Add a resident missing from the held list as an addition (entry 90001 and up) and mint its code.

    One transaction: the entry, its code and the one-slip PDF (rendered before the commit) or nothing.
    """
    _check_issue(institution_kind, worker_id, kinds)
    surname = clean_text(fields.get("surname", ""), "surname", required=True, name=True)
    given = clean_text(fields.get("given_name", ""), "given_name", required=True, name=True)
    patronymic = clean_text(fields.get("patronymic", ""), "patronymic", required=False, name=True)
    raw_birth = fields.get("birth_date", "").strip()
    try:
        birth = date.fromisoformat(raw_birth) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw_birth) else None
    except ValueError:
        birth = None
    if birth is None:
        raise StaffInputError(N_("not a YYYY-MM-DD date"), field="birth_date")
    with transaction(conn):
        if not can_act_for(conn, user, institution_code):
            raise StaffInputError(N_("you are not a responsible worker of this institution"), field="institution")
        held = conn.execute("SELECT list_date FROM respondent_lists WHERE institution_code = ?",
                            (institution_code,)).fetchone()
        if held is None:
            raise StaffInputError(N_("no list is held for this institution"), field="institution")
        if not _EARLIEST_BIRTH <= birth <= date.fromtimestamp(now_ms / 1000):
            raise StaffInputError(N_("birth date in the future or before 1880"), field="birth_date")
        top = conn.execute(
            "SELECT MAX(entry_id) FROM respondent_entries WHERE institution_code = ? AND entry_id >= ?",
            (institution_code, f"{institution_code}/{ADDITION_FIRST:05d}")).fetchone()[0]
        number = int(top.rsplit("/", 1)[1]) + 1 if top else ADDITION_FIRST
        if number > _ADDITION_LAST:
            raise StaffInputError(N_("this institution has no addition numbers left"), field="institution")
        entry = ListEntry(institution_code, f"{institution_code}/{number:05d}", surname, given, patronymic,
                          birth.isoformat())
        conn.execute(
            "INSERT INTO respondent_entries (institution_code, entry_id, surname, given_name, patronymic, birth_date,"
            " added_at_ms, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.institution_code, entry.entry_id, surname, given, patronymic, entry.birth_date, now_ms, user.id))
        conn.execute("UPDATE respondent_lists SET entry_count = entry_count + 1 WHERE institution_code = ?",
                     (institution_code,))
        write_audit(conn, now_ms, user.id, "lists.resident_added", entry_id=entry.entry_id)
        slip = _insert_code(conn, pepper, [entry], institution_kind=institution_kind, worker_id=worker_id,
                            user_id=user.id, now_ms=now_ms)
        pdf = render(institution_code, [slip])
    return entry, pdf


# ---- the change feed for web services --------------------------------------------------------


def code_changes(conn: StaffConn, since: int, limit: int) -> tuple[list[AccessCodeChange], int]:
    """The newest state of every code changed after ``since`` (ascending version, at most ``limit``), and the
    highest version held."""
    rows = conn.execute(
        "SELECT version, code_hash, entry_id, institution_code, institution_kind, worker_id, status, members"
        " FROM access_codes WHERE version > ? ORDER BY version LIMIT ?", (since, limit)).fetchall()
    latest = int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM access_codes").fetchone()[0])
    return [AccessCodeChange(version=r[0], code_hash=r[1], entry_id=r[2], institution_code=r[3], institution_kind=r[4],
                             worker_id=r[5], status=r[6], members=tuple(json.loads(r[7])) if r[7] else ())
            for r in rows], latest
