"""The tablet's held assignments: its institution's list entries with their status (protocol section 10.1).

Kept in ``assignments.json`` in the tablet's home (mode 0600: it holds names),
written atomically. Only verified documents (``wire.parse_assignments`` with
the provisioned gateway keys, naming this device) are applied:

* a document whose ``version`` is below the held one is refused (``rollback``);
* ``since`` 0 replaces the list;
* a delta whose ``since`` is the held version, of the held institution,
  updates the entries it names (``withdrawn`` removes one);
* a delta from another ``since`` or of another institution (the tablet moved)
  is not applied (``stale``): fetch the whole list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keys.files import atomic_write
from wire import Assignments
from wire.assignments import ENUMERATED_STATUSES

from .errors import TabletError

__all__ = ["ASSIGNMENTS_FILE", "AssignmentBook", "HeldEntry"]

ASSIGNMENTS_FILE = "assignments.json"


@dataclass(frozen=True, slots=True)
class HeldEntry:
    entry_id: str
    status: str
    enumerated_at_ms: int | None
    surname: str
    given_name: str
    patronymic: str
    birth_date: str

    @property
    def enumerated(self) -> bool:
        return self.status in ENUMERATED_STATUSES


@dataclass(slots=True)
class AssignmentBook:
    path: Path
    institution: str | None = None
    version: int = 0
    fetched_at_ms: int | None = None
    entries: dict[str, HeldEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path) -> AssignmentBook:
        path = home / ASSIGNMENTS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as e:
            raise TabletError("assignments file unreadable", path=str(path)) from e
        try:
            entries = {e["entry_id"]: HeldEntry(**e) for e in data["entries"]}
            return cls(path, data["institution"], int(data["version"]), data.get("fetched_at_ms"), entries)
        except (KeyError, TypeError, ValueError) as e:
            raise TabletError("assignments file malformed", path=str(path)) from e

    def save(self) -> None:
        body: dict[str, Any] = {
            "v": 1,
            "institution": self.institution,
            "version": self.version,
            "fetched_at_ms": self.fetched_at_ms,
            "entries": [
                {
                    "entry_id": e.entry_id,
                    "status": e.status,
                    "enumerated_at_ms": e.enumerated_at_ms,
                    "surname": e.surname,
                    "given_name": e.given_name,
                    "patronymic": e.patronymic,
                    "birth_date": e.birth_date,
                }
                for e in sorted(self.entries.values(), key=lambda x: x.entry_id)
            ],
        }
        atomic_write(self.path, json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8"))

    def apply(self, doc: Assignments, *, now_ms: int) -> str:
        """Apply a verified document; returns ``replaced``, ``updated``, ``unchanged``, ``rollback`` or ``stale``."""
        if self.institution == doc.institution and doc.version < self.version:
            return "rollback"
        if doc.since == 0:
            self.entries = {}
            outcome = "replaced"
        elif doc.institution != self.institution:  # a delta of another institution's versions: ask whole
            return "stale"
        elif doc.since == self.version:
            outcome = "updated" if doc.entries else "unchanged"
        else:
            return "stale"
        for a in doc.entries:
            if a.status == "withdrawn":
                self.entries.pop(a.entry_id, None)
            else:
                self.entries[a.entry_id] = HeldEntry(
                    a.entry_id, a.status, a.enumerated_at_ms, a.surname, a.given_name, a.patronymic, a.birth_date
                )
        self.institution, self.version, self.fetched_at_ms = doc.institution, doc.version, now_ms
        self.save()
        return outcome

    def number(self, n: int) -> HeldEntry | None:
        """The held entry with number ``n`` of the institution's list."""
        if self.institution is None:
            return None
        return self.entries.get(f"{self.institution}/{n:05d}")
