"""Census sheet rules (``census-sheet/1``) that are not JSON Schema, and the rule id of a schema failure.

Pure: no I/O, no JSON Schema library. The schema file
(``wire/schemas/census-sheet-1.schema.json``, normative text in
``docs/census-sheet.md``) states the structural rules and tags each constraint
with its rule id (``x-rule``); a program validates with any JSON Schema 2020-12
library and passes each failure's schema path here (``rule_for_schema_path``).
The cross-field rules (``S-50`` and above, listed in the schema's
``x-cross-field-rules``) need the configured census moment and are checked by
``cross_field_problems`` on a sheet that already passed the schema.

A ``SheetProblem`` names a rule id and the JSON pointer (RFC 6901) of the
offending value, never the value: sheets hold personal data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, timezone
from datetime import datetime as _datetime
from functools import lru_cache
from typing import Any

__all__ = [
    "FOUNDING_ORDER_MOMENT",
    "OVERSIZE_RULE",
    "CensusMoment",
    "SheetProblem",
    "cross_field_problems",
    "json_pointer",
    "rule_for_schema_path",
]

OVERSIZE_RULE = "S-60"
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_SAFE_MEMBER = re.compile(r"[A-Za-z0-9_]{1,32}")
_ADULT_MARITAL_AGE = 16
_SCHOOL_AGE = 7
_MIN_GENERATION_GAP = 12


@dataclass(frozen=True, slots=True)
class CensusMoment:
    """00:00 local time on ``day``, local time being UTC + ``utc_offset_minutes``.

    Configuration, not a constant (DESIGN.md section 1): the founding order's is
    ``FOUNDING_ORDER_MOMENT`` (00:00 on 1 October 2020, Astana time, UTC+6).
    """

    day: date
    utc_offset_minutes: int = 360

    def __post_init__(self) -> None:
        if not -14 * 60 <= self.utc_offset_minutes <= 14 * 60:
            raise ValueError("utc_offset_minutes must lie within -840..840")

    @classmethod
    def parse(cls, text: str, utc_offset_minutes: int = 360) -> CensusMoment:
        """``YYYY-MM-DD`` (a calendar date), else ``ValueError``."""
        try:
            if not isinstance(text, str) or not _DATE.fullmatch(text):
                raise ValueError("not YYYY-MM-DD")
            return cls(date.fromisoformat(text), utc_offset_minutes)
        except ValueError as e:
            raise ValueError(f"census moment must be a calendar date YYYY-MM-DD ({e})") from e

    @property
    def instant_ms(self) -> int:
        """The moment as Unix milliseconds."""
        tz = timezone(timedelta(minutes=self.utc_offset_minutes))
        start = _datetime(self.day.year, self.day.month, self.day.day, tzinfo=tz)
        return int(start.timestamp()) * 1000

    def as_json(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "utc_offset_minutes": self.utc_offset_minutes}


FOUNDING_ORDER_MOMENT = CensusMoment(date(2020, 10, 1), 360)


@dataclass(frozen=True, slots=True)
class SheetProblem:
    rule: str
    pointer: str

    @property
    def reason(self) -> str:
        """``"S-27 /persons/0/birth_date"``; just the rule id when the pointer is the whole sheet."""
        return f"{self.rule} {self.pointer}" if self.pointer else self.rule


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 pointer of a path of member names and array indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve(schema: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError("only local references are used by the sheet schema")
    node: Any = schema
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def rule_for_schema_path(
    schema: Mapping[str, Any],
    schema_path: Sequence[str | int],
    *,
    keyword: str,
    instance_path: Sequence[str | int],
    instance: Any = None,
) -> SheetProblem:
    """The rule a JSON Schema failure breaks and the pointer of the offending value.

    ``schema_path`` runs from the schema root to the failing keyword (as
    ``jsonschema``'s ``ValidationError.schema_path``, which leaves ``$ref`` out:
    a step missing from a node that holds a ``$ref`` continues in the referenced
    schema). ``instance`` is the failing instance, used for ``required`` (to
    name the missing member) and ``additionalProperties`` (to point at the first
    unexpected member, when its name is a plain identifier).
    """
    nodes: list[Any] = [schema]
    node: Any = schema
    steps = [s for s in schema_path if s != "$ref"]
    for index, step in enumerate(steps):
        while isinstance(node, Mapping) and step not in node and isinstance(node.get("$ref"), str):
            node = _resolve(schema, node["$ref"])  # jsonschema leaves "$ref" out of schema paths
            nodes.append(node)
        if index == len(steps) - 1:
            break  # the failing keyword itself
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
        nodes.append(node)
    pointer = list(instance_path)
    rule = next((n["x-rule"] for n in reversed(nodes) if isinstance(n, Mapping) and "x-rule" in n), "S-1")
    if keyword == "required" and isinstance(instance, Mapping) and isinstance(node, Mapping):
        missing = next((m for m in node.get("required", ()) if m not in instance), None)
        if missing is not None:
            member = node.get("properties", {}).get(missing)
            if isinstance(member, Mapping) and "x-rule" in member:
                rule = member["x-rule"]
            pointer.append(missing)
    elif keyword == "additionalProperties" and isinstance(instance, Mapping) and isinstance(node, Mapping):
        known = node.get("properties", {})
        extra = sorted(k for k in instance if k not in known)
        if extra and _SAFE_MEMBER.fullmatch(extra[0]):
            pointer.append(extra[0])
    return SheetProblem(rule, json_pointer(pointer))


def _birth(person: Mapping[str, Any]) -> date | None:
    try:
        return date.fromisoformat(person["birth_date"])
    except (KeyError, TypeError, ValueError):
        return None


def _age(born: date, at: date) -> int:
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


def _years_apart(older: date, younger: date) -> int:
    return _age(older, younger)


def cross_field_problems(sheet: Mapping[str, Any], moment: CensusMoment) -> list[SheetProblem]:
    """Every failure of rules S-50..S-58 on a sheet that is valid under the schema, in rule order."""
    found = list(_cross_field(sheet, moment))
    if len(found) > 1:
        found.sort(key=lambda p: (int(p.rule[2:]), p.pointer))
    return found


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # a JSON object is a dict: skip the ABC check


@lru_cache(maxsize=16)
def _moment_facts(moment: CensusMoment) -> tuple[str, int]:
    return moment.day.isoformat(), moment.instant_ms


def _cross_field(sheet: Mapping[str, Any], moment: CensusMoment) -> Iterator[SheetProblem]:
    day_text, instant_ms = _moment_facts(moment)
    if sheet.get("census_moment") != day_text:
        yield SheetProblem("S-50", "/census_moment")
    filled = sheet.get("filled_at_ms")
    if isinstance(filled, int) and filled < instant_ms:
        yield SheetProblem("S-51", "/filled_at_ms")
    if sheet.get("form") == "institution":
        code, entry = sheet.get("institution_code"), sheet.get("respondent_list_entry")
        if isinstance(code, str) and isinstance(entry, str) and not entry.startswith(code + "/"):
            yield SheetProblem("S-54", "/respondent_list_entry")
    persons = sheet.get("persons")
    if not isinstance(persons, list):
        return
    births = [_birth(person) if _is_mapping(person) else None for person in persons]
    yield from _person_rules(persons, births, moment)
    if sheet.get("form") == "household":
        yield from _household_rules(persons, births)


def _person_rules(persons: list[Any], births: list[date | None], moment: CensusMoment) -> Iterator[SheetProblem]:
    census_day = moment.day
    for i, person in enumerate(persons):
        if not _is_mapping(person):
            continue
        if person.get("person_no") != i + 1:
            yield SheetProblem("S-53", json_pointer(("persons", i, "person_no")))
        born = births[i]
        if born is None or born >= census_day:
            yield SheetProblem("S-52", json_pointer(("persons", i, "birth_date")))
            continue
        age = _age(born, census_day)
        if (person.get("marital_status") == "not_applicable") != (age < _ADULT_MARITAL_AGE):
            yield SheetProblem("S-55", json_pointer(("persons", i, "marital_status")))
        if (person.get("education") == "not_applicable") != (age < _SCHOOL_AGE):
            yield SheetProblem("S-56", json_pointer(("persons", i, "education")))


def _generation_gap(relation: Any, head_born: date, born: date) -> int | None:
    """Years between the head and a child, grandchild (less one generation) or parent; None for other relations."""
    if relation == "child":
        return _years_apart(head_born, born) if head_born <= born else -1
    if relation == "grandchild":
        return (_years_apart(head_born, born) if head_born <= born else -1) - _MIN_GENERATION_GAP
    if relation == "parent":
        return _years_apart(born, head_born) if born <= head_born else -1
    return None


def _household_rules(persons: list[Any], births: list[date | None]) -> Iterator[SheetProblem]:
    head_born = births[0] if persons else None
    spouses = 0
    for i in range(1, len(persons)):
        person = persons[i]
        if not _is_mapping(person):
            continue
        relation, born = person.get("relation_to_head"), births[i]
        if relation == "spouse":
            spouses += 1
            if spouses > 1:
                yield SheetProblem("S-58", json_pointer(("persons", i, "relation_to_head")))
        if head_born is None or born is None:
            continue
        gap = _generation_gap(relation, head_born, born)
        if gap is not None and gap < _MIN_GENERATION_GAP:
            yield SheetProblem("S-57", json_pointer(("persons", i, "birth_date")))
