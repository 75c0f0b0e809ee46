# ruff: noqa: RUF001  (Cyrillic letters in names and house numbers are the point)
"""sheets.json: census sheets (docs/census-sheet.md) that are valid, and one for every rule broken.

Each invalid case is a valid sheet with one change, and names the rule it
breaks and the JSON pointer a quarantine reason must name. ``SHEET_HOUSEHOLD``
and ``SHEETS_MORE`` are also the sheets of the envelope vectors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

__all__ = ["CENSUS", "SHEETS_MORE", "SHEET_HOUSEHOLD", "sheet_vectors"]

CENSUS = {"date": "2020-10-01", "utc_offset_minutes": 360}
MOMENT_MS = 1601488800000  # 2020-10-01T00:00+06:00
MAX_SHEET_BYTES = 65536

SHEET_HOUSEHOLD: dict[str, Any] = {
    "address": {"district": "Esil", "house": "12", "region": "KZ-71", "settlement": "Astana", "street": "Abai"},
    "census_moment": "2020-10-01",
    "filled_at_ms": 1601622000000,
    "form": "household",
    "household_id": "HH-00000001",
    "persons": [
        {"birth_date": "1985-03-14", "citizenship": "KAZ", "education": "higher", "given_name": "Aigul",
         "marital_status": "married", "native_language": "kaz", "nationality": "Kazakh", "person_no": 1,
         "relation_to_head": "head", "sex": "female", "surname": "Serikova"},
    ],
    "sheet_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "source": "interview",
    "worker_id": "W-0001",
    "worker_role": "interviewer",
}


def _person(no: int, relation: str, birth: str, *, sex: str = "male", marital: str = "married",
            education: str = "general_secondary", **extra: str) -> dict[str, Any]:
    return {"birth_date": birth, "citizenship": "KAZ", "education": education, "given_name": "Ерлан",
            "marital_status": marital, "native_language": "kaz", "nationality": "Қазақ", "person_no": no,
            "relation_to_head": relation, "sex": sex, "surname": "Сериков", **extra}


SHEET_FAMILY: dict[str, Any] = {
    "address": {"apartment": "45", "district": "Алмалинский район", "house": "7/2", "region": "KZ-75",
                "settlement": "Алматы", "street": "проспект Абая"},
    "census_moment": "2020-10-01",
    "filled_at_ms": 1601800000000,
    "form": "household",
    "household_id": "HH-00004217",
    "persons": [
        _person(1, "head", "1960-05-20", patronymic="Маратұлы"),
        _person(2, "spouse", "1962-11-02", sex="female", education="higher", given_name="Гүлнар",
                surname="Серікова"),
        _person(3, "child", "2015-01-09", sex="female", marital="not_applicable", education="not_applicable",
                given_name="Әсел"),
        _person(4, "grandchild", "2010-06-30", marital="not_applicable", education="primary", given_name="Нұрлан"),
        _person(5, "parent", "1935-02-11", sex="female", marital="widowed", education="primary",
                given_name="Бибігүл"),
    ],
    "sheet_id": "6b1d3f2a-41c0-4e55-9a6b-2f0c7d8e9a10",
    "source": "interview",
    "worker_id": "int-75-0042",
    "worker_role": "interviewer",
}

SHEET_INSTITUTION: dict[str, Any] = {
    "address": {"district": "Атырау", "house": "3А", "region": "KZ-23", "settlement": "Атырау",
                "street": "улица Сатпаева"},
    "census_moment": "2020-10-01",
    "filled_at_ms": 1602000000000,
    "form": "institution",
    "institution_code": "BL-004711",
    "institution_kind": "inpatient_care",
    "persons": [_person(1, "resident", "1941-08-15", marital="widowed", education="technical_vocational",
                        citizenship="XXA")],
    "respondent_list_entry": "BL-004711/00017",
    "sheet_id": "a3e1c0de-7b2f-4c19-8d55-0e6f4a2b9c31",
    "source": "administration_records",
    "worker_id": "rw-BL-004711-1",
    "worker_role": "responsible_worker",
}

_LETTERS = "Әб"


def _at_limits() -> dict[str, Any]:
    sheet = copy.deepcopy(SHEET_HOUSEHOLD)
    sheet["filled_at_ms"] = MOMENT_MS  # exactly the census moment (S-51)
    sheet["address"] = {"apartment": "9999Я", "district": "№" + "д" * 99, "house": "9999Я/999", "region": "KZ-ABC",
                        "settlement": "Ş", "street": "«Ленина» (1-я) ул., д.'/"}
    head = sheet["persons"][0]
    head.update(surname="Ә" * 64, given_name="Äğñöūüşİı", patronymic="Ab-Cd Ef'gh", birth_date="1900-01-01",
                marital_status="widowed", education="none", citizenship="XXA", nationality="A")
    persons = [head]
    # a child exactly 12 years younger than the head is allowed (S-57)
    persons.append(_person(2, "child", "1912-01-01", education="none"))
    for no in range(3, 31):
        persons.append(_person(no, "non_relative", "1990-01-01"))
    persons[2] = _person(3, "non_relative", "2020-09-30", marital="not_applicable", education="not_applicable")
    persons[3] = _person(4, "non_relative", "2004-10-01", marital="never_married", education="basic_secondary")
    persons[4] = _person(5, "non_relative", "2004-10-02", marital="not_applicable", education="primary")
    persons[5] = _person(6, "non_relative", "2013-10-01", marital="not_applicable", education="none")
    persons[6] = _person(7, "non_relative", "2013-10-02", marital="not_applicable", education="not_applicable")
    sheet["persons"] = persons
    sheet["worker_id"] = "W" + "x" * 63
    return sheet


SHEETS_MORE = [SHEET_FAMILY, SHEET_INSTITUTION, copy.deepcopy(SHEET_HOUSEHOLD) | {
    "sheet_id": "c9a4e7d2-5f31-4b08-b6e2-93d1f0a7c845", "household_id": "HH-00000002"}]

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    def mutate(sheet: dict[str, Any]) -> Any:
        *parents, last = path.split("/")[1:]
        node: Any = sheet
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value
        return sheet
    return mutate


def _del(path: str) -> Mutation:
    def mutate(sheet: dict[str, Any]) -> Any:
        *parents, last = path.split("/")[1:]
        node: Any = sheet
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[last]
        return sheet
    return mutate


def _add_person(person: dict[str, Any]) -> Mutation:
    def mutate(sheet: dict[str, Any]) -> Any:
        sheet["persons"].append(person)
        return sheet
    return mutate


def _persons(count: int) -> Mutation:
    def mutate(sheet: dict[str, Any]) -> Any:
        others = [_person(n, "non_relative", "1990-01-01") for n in range(2, count + 1)]
        sheet["persons"] = [sheet["persons"][0], *others]
        return sheet
    return mutate


H, F, I = "household", "family", "institution"  # noqa: E741
_BASES = {H: SHEET_HOUSEHOLD, F: SHEET_FAMILY, I: SHEET_INSTITUTION}

# (name, base, mutation, rule, pointer)
INVALID: list[tuple[str, str, Mutation, str, str]] = [
    ("not-an-object", H, lambda s: [s], "S-1", ""),
    ("extra-member", H, _set("/national_id", "900101300123"), "S-1", "/national_id"),
    ("no-sheet-id", H, _del("/sheet_id"), "S-2", "/sheet_id"),
    ("sheet-id-upper-case", H, _set("/sheet_id", "0F8FAD5B-D9CB-469F-A165-70867728950E"), "S-2", "/sheet_id"),
    ("sheet-id-not-v4", H, _set("/sheet_id", "0f8fad5b-d9cb-169f-a165-70867728950e"), "S-2", "/sheet_id"),
    ("form-unknown", H, _set("/form", "hostel"), "S-3", "/form"),
    ("census-moment-unpadded", H, _set("/census_moment", "2020-10-1"), "S-4", "/census_moment"),
    ("filled-at-as-string", H, _set("/filled_at_ms", "1601622000000"), "S-5", "/filled_at_ms"),
    ("filled-at-before-2000", H, _set("/filled_at_ms", 946684799999), "S-5", "/filled_at_ms"),
    ("source-unknown", I, _set("/source", "neighbours"), "S-6", "/source"),
    ("worker-id-with-space", H, _set("/worker_id", "W 0001"), "S-7", "/worker_id"),
    ("worker-id-65", H, _set("/worker_id", "W" * 65), "S-7", "/worker_id"),
    ("worker-role-unknown", H, _set("/worker_role", "supervisor"), "S-8", "/worker_role"),
    ("household-id-short", H, _set("/household_id", "HH-123"), "S-9", "/household_id"),
    ("institution-code-lower-case", I, _set("/institution_code", "bl-004711"), "S-10", "/institution_code"),
    ("institution-kind-unknown", I, _set("/institution_kind", "prison"), "S-11", "/institution_kind"),
    ("list-entry-short", I, _set("/respondent_list_entry", "BL-004711/17"), "S-12", "/respondent_list_entry"),
    ("address-extra-member", H, _set("/address/gps", "43.25,76.95"), "S-13", "/address/gps"),
    ("address-not-object", H, _set("/address", "Astana"), "S-13", "/address"),
    ("region-a-name", H, _set("/address/region", "Almaty"), "S-14", "/address/region"),
    ("district-101", H, _set("/address/district", "д" * 101), "S-15", "/address/district"),
    ("settlement-leading-space", H, _set("/address/settlement", " Astana"), "S-16", "/address/settlement"),
    ("street-markup", H, _set("/address/street", "<b>Abai</b>"), "S-17", "/address/street"),
    ("no-street", H, _del("/address/street"), "S-17", "/address/street"),
    ("house-zero", H, _set("/address/house", "0"), "S-18", "/address/house"),
    ("apartment-integer", H, _set("/address/apartment", 12), "S-19", "/address/apartment"),
    ("no-persons", H, _set("/persons", []), "S-20", "/persons"),
    ("thirty-one-persons", H, _persons(31), "S-20", "/persons"),
    ("person-extra-member", H, _set("/persons/0/iin", "850314400123"), "S-21", "/persons/0/iin"),
    ("person-no-31", F, _set("/persons/1/person_no", 31), "S-22", "/persons/1/person_no"),
    ("surname-with-digit", H, _set("/persons/0/surname", "Serik0va"), "S-23", "/persons/0/surname"),
    ("surname-65", H, _set("/persons/0/surname", "Ә" * 65), "S-23", "/persons/0/surname"),
    ("surname-double-space", H, _set("/persons/0/surname", "Serik  ova"), "S-23", "/persons/0/surname"),
    ("given-name-empty", H, _set("/persons/0/given_name", ""), "S-24", "/persons/0/given_name"),
    ("patronymic-null", H, _set("/persons/0/patronymic", None), "S-25", "/persons/0/patronymic"),
    ("sex-abbreviated", H, _set("/persons/0/sex", "f"), "S-26", "/persons/0/sex"),
    ("no-sex", H, _del("/persons/0/sex"), "S-26", "/persons/0/sex"),
    ("birth-month-13", H, _set("/persons/0/birth_date", "1985-13-01"), "S-27", "/persons/0/birth_date"),
    ("birth-year-1899", H, _set("/persons/0/birth_date", "1899-12-31"), "S-27", "/persons/0/birth_date"),
    ("citizenship-alpha-2", H, _set("/persons/0/citizenship", "KZ"), "S-28", "/persons/0/citizenship"),
    ("nationality-with-digit", H, _set("/persons/0/nationality", "Kazakh1"), "S-29", "/persons/0/nationality"),
    ("native-language-upper-case", H, _set("/persons/0/native_language", "KAZ"), "S-30",
     "/persons/0/native_language"),
    ("relation-unknown", F, _set("/persons/1/relation_to_head", "cousin"), "S-31", "/persons/1/relation_to_head"),
    ("marital-status-unknown", H, _set("/persons/0/marital_status", "single"), "S-32",
     "/persons/0/marital_status"),
    ("education-unknown", H, _set("/persons/0/education", "phd"), "S-33", "/persons/0/education"),
    ("household-with-institution-code", H, _set("/institution_code", "BL-004711"), "S-40", "/institution_code"),
    ("household-without-household-id", H, _del("/household_id"), "S-40", "/household_id"),
    ("household-from-records", H, _set("/source", "administration_records"), "S-41", "/source"),
    ("household-by-responsible-worker", H, _set("/worker_role", "responsible_worker"), "S-41", "/worker_role"),
    ("first-person-not-head", F, _set("/persons/0/relation_to_head", "spouse"), "S-42",
     "/persons/0/relation_to_head"),
    ("second-head", F, _set("/persons/1/relation_to_head", "head"), "S-42", "/persons/1/relation_to_head"),
    ("resident-in-household", F, _set("/persons/1/relation_to_head", "resident"), "S-42",
     "/persons/1/relation_to_head"),
    ("institution-without-list-entry", I, _del("/respondent_list_entry"), "S-43", "/respondent_list_entry"),
    ("institution-with-household-id", I, _set("/household_id", "HH-00000001"), "S-43", "/household_id"),
    ("institution-by-interviewer", I, _set("/worker_role", "interviewer"), "S-44", "/worker_role"),
    ("two-residents", I, _add_person(_person(2, "resident", "1950-01-01")), "S-45", "/persons"),
    ("resident-as-head", I, _set("/persons/0/relation_to_head", "head"), "S-45", "/persons/0/relation_to_head"),
    ("census-moment-other-year", H, _set("/census_moment", "2021-10-01"), "S-50", "/census_moment"),
    ("filled-before-moment", H, _set("/filled_at_ms", MOMENT_MS - 1), "S-51", "/filled_at_ms"),
    ("born-on-census-day", H, _set("/persons/0/birth_date", "2020-10-01"), "S-52", "/persons/0/birth_date"),
    ("birth-date-30-february", H, _set("/persons/0/birth_date", "1985-02-30"), "S-52", "/persons/0/birth_date"),
    ("person-numbers-skip", F, _set("/persons/2/person_no", 4), "S-53", "/persons/2/person_no"),
    ("list-entry-of-another-institution", I, _set("/respondent_list_entry", "BL-004712/00017"), "S-54",
     "/respondent_list_entry"),
    ("sixteen-not-asked-marital", F, _set("/persons/3/birth_date", "2004-10-01"), "S-55",
     "/persons/3/marital_status"),
    ("child-married", F, _set("/persons/2/marital_status", "married"), "S-55", "/persons/2/marital_status"),
    ("seven-not-asked-education", F, _set("/persons/2/birth_date", "2013-10-01"), "S-56", "/persons/2/education"),
    ("five-with-primary", F, _set("/persons/2/education", "primary"), "S-56", "/persons/2/education"),
    ("child-eleven-years-younger", F, _set("/persons/2", _person(3, "child", "1971-05-21")), "S-57",
     "/persons/2/birth_date"),
    ("parent-eleven-years-older", F, _set("/persons/4/birth_date", "1948-05-21"), "S-57", "/persons/4/birth_date"),
    ("grandchild-23-years-younger", F, _set("/persons/3", _person(4, "grandchild", "1983-05-21")), "S-57",
     "/persons/3/birth_date"),
    ("two-spouses", F, _set("/persons/4/relation_to_head", "spouse"), "S-58", "/persons/4/relation_to_head"),
    ("oversize", H, _set("/persons/0/surname", "A" * MAX_SHEET_BYTES), "S-60", ""),
]


def sheet_vectors() -> dict[str, Any]:
    valid = [
        ("household-one-person", "the sheet of envelope case 'one-sheet' (docs/census-sheet.md section 5)",
         SHEET_HOUSEHOLD),
        ("household-family", "head, spouse, a child of 5, a grandchild of 10, the head's mother; Cyrillic names",
         SHEET_FAMILY),
        ("institution-from-records", "a resident of an in-patient care organisation, from administration records, "
         "stateless", SHEET_INSTITUTION),
        ("household-at-limits", "30 persons; a 64-letter surname; a 100-character district; filled exactly at the "
         "census moment; born 1900-01-01 and the day before the census; ages 16 and 7 on the day and one day short; "
         "a child exactly 12 years younger than the head", _at_limits()),
        *((f"envelope-sheet-{i + 2}", "a sheet of envelope case 'three-sheets'", s) for i, s in enumerate(SHEETS_MORE)),
    ]
    cases: list[dict[str, Any]] = [
        {"name": n, "description": d, "sheet": copy.deepcopy(s), "expected": "ok"} for n, d, s in valid
    ]
    for name, base, mutate, rule, pointer in INVALID:
        sheet = mutate(copy.deepcopy(_BASES[base]))
        cases.append({"name": name, "description": f"the {base} sheet, changed: breaks {rule}", "sheet": sheet,
                      "expected": "quarantined", "rule": rule, "pointer": pointer,
                      "reason": f"{rule} {pointer}" if pointer else rule})
    return {
        "vectors": "sheets",
        "spec": "docs/census-sheet.md",
        "schema": "wire/schemas/census-sheet-1.schema.json",
        "census": CENSUS,
        "max_sheet_bytes": MAX_SHEET_BYTES,
        "procedure": [
            "Validate 'sheet' with the census moment 'census' (date, UTC offset) and 'max_sheet_bytes'.",
            "'ok': the sheet breaks no rule and is stored as valid.",
            "'quarantined': the sheet is stored in quarantine; its reason is 'reason' (rule id, a space and the "
            "JSON pointer 'pointer'; the rule id alone when the pointer is empty). Each case breaks one rule.",
        ],
        "cases": cases,
    }
