"""The cross-field rules (S-50..S-58) as written before they were made faster, against the current code.

``_reference`` is the previous implementation, kept verbatim in spirit: every
gap computed, every person's birth date parsed where it is used, the ABC
``Mapping`` check. Both must give the same problems, in the same order, on
generated sheets and on sheets with the fields these rules read mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tablet.generator import KindMix, generate_sheets
from wire.census_sheet import FOUNDING_ORDER_MOMENT, CensusMoment, SheetProblem, cross_field_problems, json_pointer


def _birth(person: Mapping[str, Any]) -> date | None:
    try:
        return date.fromisoformat(person["birth_date"])
    except (KeyError, TypeError, ValueError):
        return None


def _age(born: date, at: date) -> int:
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


def _reference(sheet: Mapping[str, Any], moment: CensusMoment) -> list[SheetProblem]:
    return sorted(_ref_cross(sheet, moment), key=lambda p: (int(p.rule[2:]), p.pointer))


def _ref_cross(sheet: Mapping[str, Any], moment: CensusMoment) -> Iterator[SheetProblem]:
    if sheet.get("census_moment") != moment.day.isoformat():
        yield SheetProblem("S-50", "/census_moment")
    filled = sheet.get("filled_at_ms")
    if isinstance(filled, int) and filled < moment.instant_ms:
        yield SheetProblem("S-51", "/filled_at_ms")
    if sheet.get("form") == "institution":
        code, entry = sheet.get("institution_code"), sheet.get("respondent_list_entry")
        if isinstance(code, str) and isinstance(entry, str) and not entry.startswith(code + "/"):
            yield SheetProblem("S-54", "/respondent_list_entry")
    persons = sheet.get("persons")
    if not isinstance(persons, list):
        return
    for i, person in enumerate(persons):
        if not isinstance(person, Mapping):
            continue
        if person.get("person_no") != i + 1:
            yield SheetProblem("S-53", json_pointer(("persons", i, "person_no")))
        born = _birth(person)
        if born is None or born >= moment.day:
            yield SheetProblem("S-52", json_pointer(("persons", i, "birth_date")))
            continue
        age = _age(born, moment.day)
        if (person.get("marital_status") == "not_applicable") != (age < 16):
            yield SheetProblem("S-55", json_pointer(("persons", i, "marital_status")))
        if (person.get("education") == "not_applicable") != (age < 7):
            yield SheetProblem("S-56", json_pointer(("persons", i, "education")))
    if sheet.get("form") != "household":
        return
    head = persons[0] if persons and isinstance(persons[0], Mapping) else None
    head_born = _birth(head) if head is not None else None
    spouses = 0
    for i, person in enumerate(persons[1:], start=1):
        if not isinstance(person, Mapping):
            continue
        relation, born = person.get("relation_to_head"), _birth(person)
        if relation == "spouse":
            spouses += 1
            if spouses > 1:
                yield SheetProblem("S-58", json_pointer(("persons", i, "relation_to_head")))
        if head_born is None or born is None:
            continue
        gap = {
            "child": _age(head_born, born) if head_born <= born else -1,
            "grandchild": (_age(head_born, born) if head_born <= born else -1) - 12,
            "parent": _age(born, head_born) if born <= head_born else -1,
        }.get(relation if isinstance(relation, str) else "")
        if gap is not None and gap < 12:
            yield SheetProblem("S-57", json_pointer(("persons", i, "birth_date")))


SHEETS = generate_sheets(21, 30, device_id="TAB-0001") + generate_sheets(
    22, 10, device_id="TAB-0001", mix=KindMix.only(hospital=1, boarding_school=1)
)
DATES = st.dates(date(1900, 1, 1), date(2021, 12, 31)).map(date.isoformat) | st.sampled_from(
    ["2020-10-01", "2020-09-30", "2008-10-01", "2013-10-02", "20201001", "x", ""]
)
PERSON_FIELDS = {
    "birth_date": DATES | st.none() | st.integers(),
    "relation_to_head": st.sampled_from(["head", "spouse", "child", "grandchild", "parent", "other"]) | st.none()
    | st.integers(),
    "marital_status": st.sampled_from(["not_applicable", "married", "single"]),
    "education": st.sampled_from(["not_applicable", "primary", "higher"]),
    "person_no": st.integers(0, 12) | st.booleans(),
}
SHEET_FIELDS = {
    "census_moment": st.sampled_from(["2020-10-01", "2020-10-02"]),
    "filled_at_ms": st.integers(1_601_488_800_000 - 5, 1_601_488_800_000 + 5),
    "form": st.sampled_from(["household", "institution", "other"]),
    "institution_code": st.sampled_from(["AB-000001", "ZZ-1"]),
    "respondent_list_entry": st.sampled_from(["AB-000001/7", "AB-0000017", "ZZ-1/1"]),
}
MUTATION = st.one_of(
    st.tuples(st.just("person"), st.integers(0, 9), st.sampled_from(sorted(PERSON_FIELDS)), st.data()),
    st.tuples(st.just("sheet"), st.just(0), st.sampled_from(sorted(SHEET_FIELDS)), st.data()),
    st.tuples(st.just("not-an-object"), st.integers(0, 9), st.just(""), st.data()),
    st.tuples(st.just("drop"), st.integers(0, 9), st.sampled_from(sorted(PERSON_FIELDS)), st.data()),
    st.tuples(st.just("near-head"), st.integers(1, 9), st.just(""), st.data()),
)
# Years from the head's birth to a member's: both sides of every boundary of S-57 (12 and 24 years).
NEAR = st.tuples(st.sampled_from([-13, -12, -11, 0, 11, 12, 13, 23, 24, 25]), st.integers(-1, 1))


def _near_head(head: Any, years: int, days: int) -> str | None:
    born = _birth(head) if isinstance(head, dict) else None
    if born is None:
        return None
    try:
        shifted = born.replace(year=born.year + years)
    except ValueError:  # 29 February
        shifted = born.replace(year=born.year + years, day=28)
    return date.fromordinal(shifted.toordinal() + days).isoformat()


@settings(max_examples=600, deadline=None)
@given(st.integers(0, len(SHEETS) - 1), st.lists(MUTATION, max_size=6),
       st.sampled_from([FOUNDING_ORDER_MOMENT, CensusMoment(date(2021, 3, 1), -300)]))
def test_the_rules_give_what_the_previous_code_gave(index: int, mutations: list[Any], moment: CensusMoment) -> None:
    sheet = copy.deepcopy(SHEETS[index])
    persons = sheet.get("persons") or []
    for kind, at, name, data in mutations:
        if kind == "sheet":
            sheet[name] = data.draw(SHEET_FIELDS[name])
        elif persons:
            i = at % len(persons)
            if kind == "not-an-object":
                persons[i] = [persons[i]]
            elif kind == "near-head" and isinstance(persons[i], dict):
                years, days = data.draw(NEAR)
                persons[i]["birth_date"] = _near_head(persons[0], years, days)
                persons[i]["relation_to_head"] = data.draw(PERSON_FIELDS["relation_to_head"])
            elif isinstance(persons[i], dict) and kind == "drop":
                persons[i].pop(name, None)
            elif isinstance(persons[i], dict):
                persons[i][name] = data.draw(PERSON_FIELDS[name])
    assert cross_field_problems(sheet, moment) == _reference(sheet, moment)


def test_generated_sheets_give_no_problem_under_both() -> None:
    for sheet in SHEETS:
        assert cross_field_problems(sheet, FOUNDING_ORDER_MOMENT) == _reference(sheet, FOUNDING_ORDER_MOMENT) == []


def test_every_generation_gap_boundary_gives_what_the_previous_code_gave() -> None:
    households = [s for s in SHEETS if s.get("form") == "household" and len(s["persons"]) >= 2][:5]
    checked = 0
    for base in households:
        for relation in ("child", "grandchild", "parent", "spouse", "other", None):
            for years in (-25, -24, -23, -13, -12, -11, 0, 11, 12, 13, 23, 24, 25):
                for days in (-1, 0, 1):
                    sheet = copy.deepcopy(base)
                    member = sheet["persons"][1]
                    member["relation_to_head"] = relation
                    member["birth_date"] = _near_head(sheet["persons"][0], years, days)
                    moment = FOUNDING_ORDER_MOMENT
                    assert cross_field_problems(sheet, moment) == _reference(sheet, moment)
                    checked += 1
    assert checked == 5 * 6 * 13 * 3
