"""Assignments: the gateway's signed, versioned list of a tablet's institution's first-stage entries.

Body members (``docs/protocol.md`` section "Assignments")::

    v, device_id, institution, issued_at_ms,
    version    the institution's assignments version (grows with every change)
    since      the version the delta starts after (0 = the whole list)
    entries    [{entry_id, status, enumerated_at_ms, surname, given_name, patronymic, birth_date, changed}]

Statuses: ``open``, ``enumerated-online`` (the respondent answered on the
web), ``enumerated-here`` (by this tablet), ``enumerated-elsewhere`` (another
tablet), ``needs-revisit`` (a sheet for it was quarantined and none counts
it), ``withdrawn`` (no longer on the list; only in deltas).
``institution`` is the registry's (1..64 characters); only an institution
whose code has the list form ``AA-123456`` can have entries.
``parse_assignments`` checks: entries ascend by ``entry_id``, every entry id is
of ``institution``, ``changed`` lies in ``since+1 .. version``, and
``enumerated_at_ms`` is set exactly for the enumerated statuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from . import _fields as f
from .documents import DocKind, decode_document, sign_document, verify_document
from .envelope import check_device_id
from .errors import DecodeError
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ENUMERATED_STATUSES",
    "MAX_ASSIGNMENT_ENTRIES",
    "STATUSES",
    "Assignment",
    "Assignments",
    "make_assignments",
    "parse_assignments",
]

MAX_ASSIGNMENT_ENTRIES = 100_000
STATUSES = frozenset(
    {"open", "enumerated-online", "enumerated-here", "enumerated-elsewhere", "needs-revisit", "withdrawn"}
)
ENUMERATED_STATUSES = frozenset({"enumerated-online", "enumerated-here", "enumerated-elsewhere"})
_ENTRY = re.compile(r"^([A-Z]{2}-[0-9]{6})/[0-9]{5}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_ENTRY_MEMBERS = {
    "entry_id",
    "status",
    "enumerated_at_ms",
    "surname",
    "given_name",
    "patronymic",
    "birth_date",
    "changed",
}


@dataclass(frozen=True, slots=True)
class Assignment:
    entry_id: str
    status: str
    enumerated_at_ms: int | None
    surname: str
    given_name: str
    patronymic: str
    birth_date: str
    changed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "status": self.status,
            "enumerated_at_ms": self.enumerated_at_ms,
            "surname": self.surname,
            "given_name": self.given_name,
            "patronymic": self.patronymic,
            "birth_date": self.birth_date,
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class Assignments:
    device_id: str
    institution: str
    issued_at_ms: int
    version: int
    since: int
    entries: tuple[Assignment, ...]
    raw: bytes

    @property
    def complete(self) -> bool:
        """True for the whole list (``since`` 0), False for a delta."""
        return self.since == 0


def make_assignments(
    *,
    device_id: str,
    institution: str,
    issued_at_ms: int,
    version: int,
    since: int,
    entries: list[Assignment],
    gateway_key: SigningKey,
) -> bytes:
    body = {
        "v": 1,
        "device_id": device_id,
        "institution": institution,
        "issued_at_ms": issued_at_ms,
        "version": version,
        "since": since,
        "entries": [e.to_json() for e in sorted(entries, key=lambda e: e.entry_id)],
    }
    return sign_document(DocKind.ASSIGNMENTS, body, gateway_key)


def _entry(raw: Any, institution: str, since: int, version: int) -> Assignment:
    body = f.exact_members(raw, _ENTRY_MEMBERS, "assignment entry")
    entry_id = f.get_str(body, "entry_id", max_len=16)
    match = _ENTRY.match(entry_id)
    if match is None or match.group(1) != institution:
        raise DecodeError("assignment entry id malformed or of another institution")
    status = f.get_str(body, "status", max_len=32)
    if status not in STATUSES:
        raise DecodeError("assignment status unknown")
    at = f.get_opt_int(body, "enumerated_at_ms")
    if (at is not None) != (status in ENUMERATED_STATUSES):
        raise DecodeError("enumerated_at_ms must be set exactly for an enumerated entry")
    changed = f.get_int(body, "changed", minimum=since + 1, maximum=version)
    birth = f.get_str(body, "birth_date", max_len=10)
    if status != "withdrawn" and not _DATE.match(birth):
        raise DecodeError("assignment birth date malformed")
    return Assignment(
        entry_id=entry_id,
        status=status,
        enumerated_at_ms=at,
        surname=f.get_str(body, "surname", max_len=100),
        given_name=f.get_str(body, "given_name", max_len=100),
        patronymic=f.get_str(body, "patronymic", max_len=100),
        birth_date=birth,
        changed=changed,
    )


def parse_assignments(data: bytes, gateway_keys: dict[bytes, bytes], limits: Limits = DEFAULT_LIMITS) -> Assignments:
    doc = decode_document(data, DocKind.ASSIGNMENTS, limits)
    verify_document(doc, gateway_keys)
    members = {"v", "device_id", "institution", "issued_at_ms", "version", "since", "entries"}
    body = f.exact_members(doc.body, members, "assignments")
    institution = f.get_str(body, "institution", max_len=64, min_len=1)
    version = f.get_int(body, "version")
    since = f.get_int(body, "since")
    if since > version:
        raise DecodeError("assignments since is above version")
    entries: list[Assignment] = []
    for raw in f.get_list(body, "entries", max_items=MAX_ASSIGNMENT_ENTRIES):
        entry = _entry(raw, institution, since, version)
        if entries and entry.entry_id <= entries[-1].entry_id:
            raise DecodeError("assignment entries repeat or are out of order")
        if since == 0 and entry.status == "withdrawn":
            raise DecodeError("a whole list holds no withdrawn entry")
        entries.append(entry)
    return Assignments(
        device_id=check_device_id(body["device_id"]),
        institution=institution,
        issued_at_ms=f.get_int(body, "issued_at_ms"),
        version=version,
        since=since,
        entries=tuple(entries),
        raw=doc.raw,
    )
