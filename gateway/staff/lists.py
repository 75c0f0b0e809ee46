"""First-stage respondent lists: strict CSV import per institution, as of the list date.

File rules (the whole file is refused, ``ListFileRejected``): UTF-8 (a BOM is
allowed), comma- or semicolon-separated, a header naming every required
column, no unknown or repeated column, at most ``max_rows`` rows.

Row rules (the row is refused and reported with its line number; the other
rows still import): institution code ``AA-123456``; entry id ``AA-123456/00042``
(or just the number, ``42``) of that institution, unique in the file; ISO
dates; a birth date not after the list date; names of letters, spaces,
hyphens, apostrophes and dots; a district that no spreadsheet could read as a
formula (``formula_start``); one list date and one district per institution
in the file.

Valid rows import in one transaction. Each institution named in the file gets
its list replaced whole by the file's rows, unless the held list has a later
list date (then that institution's rows are refused). Residents a responsible
worker registered on the dashboard (additions, entry numbers from 90001) stay
on the list across re-imports, unless the file lists the same entry id.
Where the lists are household-based, the optional ``household`` column groups
entries (at most ``MAX_HOUSEHOLD``): the household gets one access code.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from l10n import N_

from .accounts import write_audit
from .db import StaffConn, transaction
from .errors import ListFileRejected, StaffInputError

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ImportReport",
    "InstitutionImport",
    "ListEntry",
    "ListRow",
    "ParsedList",
    "RejectedRow",
    "RespondentList",
    "clean_text",
    "formula_start",
    "import_list",
    "load_entries",
    "load_addition_ids",
    "load_entry_ids",
    "load_lists",
    "parse_list_csv",
    "spreadsheet_safe",
]

REQUIRED_COLUMNS = ("institution_code", "entry_id", "list_date", "surname", "given_name", "birth_date")
OPTIONAL_COLUMNS = ("patronymic", "district", "household")
_CODE = re.compile(r"^[A-Z]{2}-\d{6}$")
_ENTRY_FULL = re.compile(r"^([A-Z]{2}-\d{6})/(\d{5})$")
_ENTRY_NUMBER = re.compile(r"^\d{1,5}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME_PUNCT = frozenset(" -'.\u2019\u02bc")
_EARLIEST_BIRTH = date(1880, 1, 1)
# a field start (text start, or after a separator, then spaces or quotes) followed by a formula character
_FORMULA_FIELD = re.compile("(?:^|[,;])[\\s\"']*(?=[=+\\-@\uff1d\uff0b\uff0d\uff20])")
_MAX_TEXT = 100
_HOUSEHOLD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
MAX_HOUSEHOLD = 30  # members per household (a household's code opens at most this many sheets)


@dataclass(frozen=True, slots=True)
class ListRow:
    line: int
    institution_code: str
    entry_id: str
    list_date: str
    surname: str
    given_name: str
    patronymic: str
    birth_date: str
    district: str
    household: str = ""


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """``reason`` is an English message id, ``params`` its values (the report page translates them)."""

    line: int
    column: str | None
    reason: str
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.reason % dict(self.params) if self.params else self.reason


@dataclass(frozen=True, slots=True)
class ParsedList:
    rows: tuple[ListRow, ...]
    rejected: tuple[RejectedRow, ...]
    total_rows: int


@dataclass(frozen=True, slots=True)
class InstitutionImport:
    institution_code: str
    list_date: str
    district: str
    entries: int
    replaced_list_date: str | None


@dataclass(frozen=True, slots=True)
class ImportReport:
    source_name: str
    total_rows: int
    imported: tuple[InstitutionImport, ...]
    rejected: tuple[RejectedRow, ...]

    @property
    def imported_rows(self) -> int:
        return sum(i.entries for i in self.imported)


@dataclass(frozen=True, slots=True)
class RespondentList:
    institution_code: str
    list_date: str
    district: str
    entry_count: int
    imported_at_ms: int
    source_name: str


@dataclass(frozen=True, slots=True)
class ListEntry:
    institution_code: str
    entry_id: str
    surname: str
    given_name: str
    patronymic: str
    birth_date: str


def formula_start(value: str) -> bool:
    """True when a spreadsheet could read a formula in ``value``.

    That is: it starts with ``= + - @`` (or their fullwidth forms), a tab or a
    carriage return, or such a character begins a field after a ``,`` or ``;``
    (either may be the list separator: ru and kk locales use ``;``), possibly
    after spaces or quotes.
    """
    return value.startswith(("\t", "\r")) or _FORMULA_FIELD.search(value) is not None


def spreadsheet_safe(value: str) -> str:
    """``value`` with a ``'`` before every formula start that ``formula_start`` finds.

    A spreadsheet shows the text unchanged and never evaluates it, whichever
    of ``,`` and ``;`` it takes as the separator.
    """
    if value.startswith(("\t", "\r")):
        value = "'" + value
    return _FORMULA_FIELD.sub(lambda m: m.group(0) + "'", value)


def clean_text(value: str, column: str, *, required: bool, name: bool, max_len: int = _MAX_TEXT) -> str:
    """Trimmed NFC text; names allow only letters, marks, spaces, hyphens, apostrophes and dots."""
    value = unicodedata.normalize("NFC", value.strip())
    if not value:
        if required:
            raise StaffInputError(N_("empty"), field=column)
        return ""
    if len(value) > max_len:
        raise StaffInputError(N_("longer than %(max)s characters"), field=column, max=max_len)
    for ch in value:
        cat = unicodedata.category(ch)
        if cat[0] == "C":
            raise StaffInputError(N_("control or invisible character"), field=column)
        if name and not (cat[0] in "LM" or ch in _NAME_PUNCT):
            raise StaffInputError(N_("unexpected character %(char)s in a name"), field=column, char=repr(ch))
    return value


def _iso_date(value: str, column: str) -> date:
    value = value.strip()
    if not _ISO_DATE.match(value):
        raise StaffInputError(N_("not a YYYY-MM-DD date"), field=column)
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise StaffInputError(N_("not a calendar date"), field=column) from e


def _row(fields: dict[str, str], line: int) -> ListRow:
    code = fields["institution_code"].strip()
    if not _CODE.match(code):
        raise StaffInputError(N_("institution code must look like AB-123456"), field="institution_code")
    raw_entry = fields["entry_id"].strip()
    full = _ENTRY_FULL.match(raw_entry)
    if full:
        if full.group(1) != code:
            raise StaffInputError(N_("entry id names another institution"), field="entry_id")
        number = int(full.group(2))
    elif _ENTRY_NUMBER.match(raw_entry):
        number = int(raw_entry)
    else:
        raise StaffInputError(N_("entry id must be CODE/NNNNN or a number"), field="entry_id")
    if number < 1:
        raise StaffInputError(N_("entry number must be >= 1"), field="entry_id")
    list_date = _iso_date(fields["list_date"], "list_date")
    birth = _iso_date(fields["birth_date"], "birth_date")
    if not _EARLIEST_BIRTH <= birth <= list_date:
        raise StaffInputError(N_("birth date after the list date or before 1880"), field="birth_date")
    return ListRow(
        line=line,
        institution_code=code,
        entry_id=f"{code}/{number:05d}",
        list_date=list_date.isoformat(),
        surname=clean_text(fields["surname"], "surname", required=True, name=True),
        given_name=clean_text(fields["given_name"], "given_name", required=True, name=True),
        patronymic=clean_text(fields.get("patronymic", ""), "patronymic", required=False, name=True),
        birth_date=birth.isoformat(),
        district=_district(fields.get("district", "")),
        household=_household(fields.get("household", "")),
    )


def _household(value: str) -> str:
    value = value.strip()
    if value and not _HOUSEHOLD.fullmatch(value):
        raise StaffInputError("household must be 1-32 letters, digits or hyphens", field="household")
    return value


def _district(value: str) -> str:
    district = clean_text(value, "district", required=False, name=False)
    if formula_start(district):
        raise StaffInputError(
            N_("a field of this text would start with = + - or @ (a spreadsheet formula)"), field="district"
        )
    return district


def _header(first_line: str) -> tuple[str, list[str]]:
    delimiter = ";" if ";" in first_line and "," not in first_line else ","
    columns = [c.strip().lower() for c in next(csv.reader([first_line], delimiter=delimiter))]
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if unknown:
        raise ListFileRejected(
            N_("unknown column(s): %(columns)s"),
            reason="unknown-column",
            field="header",
            line=1,
            columns=", ".join(unknown),
        )
    if missing:
        raise ListFileRejected(
            N_("missing column(s): %(columns)s"),
            reason="missing-column",
            field="header",
            line=1,
            columns=", ".join(missing),
        )
    if len(set(columns)) != len(columns):
        raise ListFileRejected(N_("a column appears twice"), reason="repeated-column", field="header", line=1)
    return delimiter, columns


def parse_list_csv(data: bytes, *, max_bytes: int, max_rows: int) -> ParsedList:
    """Validate a list file; raises ``ListFileRejected`` when the file as a whole is unusable."""
    if len(data) > max_bytes:
        raise ListFileRejected(
            N_("file larger than %(max)s bytes"), reason="too-large", field="file", max=max_bytes
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ListFileRejected(N_("not UTF-8 (byte %(at)s)"), reason="not-utf8", field="file", at=e.start) from e
    if not text.strip():
        raise ListFileRejected(N_("empty file"), reason="empty", field="file")
    first_line = text.splitlines()[0]
    delimiter, columns = _header(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[ListRow] = []
    rejected: list[RejectedRow] = []
    seen_entries: set[str] = set()
    per_institution: dict[str, tuple[str, str]] = {}
    household_sizes: dict[tuple[str, str], int] = {}
    total = 0
    try:
        next(reader)
        line = reader.line_num + 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record or all(not f.strip() for f in record):
                continue
            total += 1
            if total > max_rows:
                raise ListFileRejected(
                    N_("more than %(max)s rows"), reason="too-many-rows", field="file", max=max_rows
                )
            if len(record) != len(columns):
                rejected.append(
                    RejectedRow(
                        start,
                        None,
                        N_("%(fields)s fields, header has %(columns)s"),
                        {"fields": len(record), "columns": len(columns)},
                    )
                )
                continue
            try:
                row = _row(dict(zip(columns, record, strict=True)), start)
            except StaffInputError as e:
                rejected.append(RejectedRow(start, e.field, e.msgid, e.params))
                continue
            if row.entry_id in seen_entries:
                rejected.append(
                    RejectedRow(start, "entry_id", N_("%(entry)s appears earlier in the file"), {"entry": row.entry_id})
                )
                continue
            held = per_institution.setdefault(row.institution_code, (row.list_date, row.district))
            if held[0] != row.list_date:
                rejected.append(
                    RejectedRow(
                        start,
                        "list_date",
                        N_("%(code)s is listed as of %(date)s"),
                        {"code": row.institution_code, "date": held[0]},
                    )
                )
                continue
            if held[1] != row.district:
                rejected.append(
                    RejectedRow(start, "district", N_("%(code)s has another district"), {"code": row.institution_code})
                )
                continue
            if row.household:
                members = household_sizes.get((row.institution_code, row.household), 0) + 1
                if members > MAX_HOUSEHOLD:
                    rejected.append(
                        RejectedRow(start, "household", N_("more than %(n)s members"), {"n": MAX_HOUSEHOLD})
                    )
                    continue
                household_sizes[(row.institution_code, row.household)] = members
            seen_entries.add(row.entry_id)
            rows.append(row)
    except csv.Error as e:
        raise ListFileRejected(
            N_("line %(at_line)s: malformed CSV (%(error)s)"),
            reason="malformed-csv",
            field="file",
            line=reader.line_num,
            at_line=reader.line_num,
            error=str(e),
        ) from e
    return ParsedList(tuple(rows), tuple(rejected), total)


def import_list(
    conn: StaffConn, parsed: ParsedList, *, source_name: str, user_id: int | None, now_ms: int
) -> ImportReport:
    """Replace the lists of every institution in ``parsed`` in one transaction."""
    by_code: dict[str, list[ListRow]] = {}
    for row in parsed.rows:
        by_code.setdefault(row.institution_code, []).append(row)
    imported: list[InstitutionImport] = []
    rejected = list(parsed.rejected)
    with transaction(conn):
        for code, rows in sorted(by_code.items()):
            held = conn.execute("SELECT list_date FROM respondent_lists WHERE institution_code = ?", (code,)).fetchone()
            list_date = rows[0].list_date
            if held is not None and held[0] > list_date:
                reason = N_("%(code)s: the held list is as of %(held)s, newer than %(date)s")
                params = {"code": code, "held": held[0], "date": list_date}
                rejected.extend(RejectedRow(r.line, "list_date", reason, params) for r in rows)
                continue
            # residents registered on the dashboard (additions) stay unless the file lists their entry id
            conn.execute(
                "DELETE FROM respondent_entries WHERE institution_code = ? AND (added_at_ms IS NULL OR entry_id IN"
                " (SELECT value FROM json_each(?)))",
                (code, json.dumps([r.entry_id for r in rows])),
            )
            added = conn.execute(
                "SELECT count(*) FROM respondent_entries WHERE institution_code = ?", (code,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO respondent_lists (institution_code, list_date, district, entry_count, imported_at_ms,"
                " imported_by, source_name) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (institution_code) DO UPDATE SET list_date = excluded.list_date,"
                " district = excluded.district, entry_count = excluded.entry_count,"
                " imported_at_ms = excluded.imported_at_ms, imported_by = excluded.imported_by,"
                " source_name = excluded.source_name",
                (code, list_date, rows[0].district, len(rows) + added, now_ms, user_id, source_name),
            )
            conn.executemany(
                "INSERT INTO respondent_entries (institution_code, entry_id, surname, given_name, patronymic,"
                " birth_date, household) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(code, r.entry_id, r.surname, r.given_name, r.patronymic, r.birth_date, r.household or None)
                 for r in rows],
            )
            imported.append(InstitutionImport(code, list_date, rows[0].district, len(rows), held[0] if held else None))
        write_audit(
            conn,
            now_ms,
            user_id,
            "lists.imported",
            source=source_name,
            institutions=[i.institution_code for i in imported],
            rows=sum(i.entries for i in imported),
            rejected=len(rejected),
        )
    rejected.sort(key=lambda r: r.line)
    return ImportReport(source_name, parsed.total_rows, tuple(imported), tuple(rejected))


def load_lists(conn: StaffConn) -> list[RespondentList]:
    rows = conn.execute(
        "SELECT institution_code, list_date, district, entry_count, imported_at_ms, source_name"
        " FROM respondent_lists ORDER BY institution_code"
    ).fetchall()
    return [RespondentList(*r) for r in rows]


def load_entry_ids(conn: StaffConn) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for code, entry in conn.execute("SELECT institution_code, entry_id FROM respondent_entries"):
        out.setdefault(code, set()).add(entry)
    return {k: frozenset(v) for k, v in out.items()}


def load_entries(conn: StaffConn, institution_code: str | None) -> list[ListEntry]:
    sql = "SELECT institution_code, entry_id, surname, given_name, patronymic, birth_date FROM respondent_entries"
    if institution_code is None:
        rows = conn.execute(sql + " ORDER BY institution_code, entry_id").fetchall()
    else:
        rows = conn.execute(sql + " WHERE institution_code = ? ORDER BY entry_id", (institution_code,)).fetchall()
    return [ListEntry(*r) for r in rows]


def load_addition_ids(conn: StaffConn) -> dict[str, frozenset[str]]:
    """Entries registered on the dashboard (not from a list file), per institution."""
    out: dict[str, set[str]] = {}
    for code, entry in conn.execute(
        "SELECT institution_code, entry_id FROM respondent_entries WHERE added_at_ms IS NOT NULL"
    ):
        out.setdefault(code, set()).add(entry)
    return {k: frozenset(v) for k, v in out.items()}
