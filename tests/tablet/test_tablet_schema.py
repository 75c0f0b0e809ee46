# ruff: noqa: RUF001  (Cyrillic test names, one with a digit on purpose)
"""The census-sheet JSON Schema: generated sheets pass, a table of broken sheets fails."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tablet.errors import InvalidSheetError
from tablet.generator import KindMix, generate_sheets
from tablet.sheet_schema import SheetValidator, load_sheet_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "wire" / "schemas" / "census-sheet-1.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _first(form: str) -> dict[str, Any]:
    mix = KindMix() if form == "household" else KindMix.only(hospital=1)
    for sheet in generate_sheets(5, 50, device_id="tab-schema", mix=mix):
        if sheet["form"] == form and (form == "institution" or len(sheet["persons"]) >= 3):
            return sheet
    raise AssertionError(f"no {form} sheet generated")


def test_schema_file_is_the_packaged_one() -> None:
    assert load_sheet_schema() == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_generated_sheet_validates(validator: Draft202012Validator, seed: int) -> None:
    for mix in (KindMix(), KindMix.only(childrens_home=1, boarding_school=1, hospital=1, social_care_centre=1)):
        for sheet in generate_sheets(seed, 300, device_id=f"tab-{seed}", mix=mix):
            errors = sorted(e.json_path for e in validator.iter_errors(sheet))
            assert errors == [], (sheet["sheet_id"], errors)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(sheet: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = sheet
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(sheet: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = sheet
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[last]

    return mutate


def _two_residents(sheet: dict[str, Any]) -> None:
    second = copy.deepcopy(sheet["persons"][0])
    second["person_no"] = 2
    sheet["persons"].append(second)


def _thirty_one_persons(sheet: dict[str, Any]) -> None:
    base = sheet["persons"][-1]
    while len(sheet["persons"]) < 31:
        p = copy.deepcopy(base)
        p["person_no"] = len(sheet["persons"]) + 1 if len(sheet["persons"]) < 30 else 30
        sheet["persons"].append(p)


INVALID_HOUSEHOLD = [
    ("extra top-level member", _set("national_id", "900101300123")),
    ("no sheet_id", _delete("sheet_id")),
    ("sheet_id upper case", _set("sheet_id", "7870409D-AD6F-4A2F-A5DF-B027186C7310")),
    ("sheet_id not a v4 uuid", _set("sheet_id", "7870409d-ad6f-1a2f-a5df-b027186c7310")),
    ("unknown form", _set("form", "hostel")),
    ("float time", _set("filled_at_ms", 1790000000000.5)),
    ("time as string", _set("filled_at_ms", "1790000000000")),
    ("time before 2024", _set("filled_at_ms", 0)),
    ("census moment not a date", _set("census_moment", "2020-10-1")),
    ("household with institution code", _set("institution_code", "DD-000123")),
    ("household from records", _set("source", "administration_records")),
    ("household by responsible worker", _set("worker_role", "responsible_worker")),
    ("household without household_id", _delete("household_id")),
    ("household_id malformed", _set("household_id", "HH-123")),
    ("no persons", _set("persons", [])),
    ("31 persons", _thirty_one_persons),
    ("first person not the head", _set("persons.0.relation_to_head", "spouse")),
    ("second head", _set("persons.1.relation_to_head", "head")),
    ("head numbered 2", _set("persons.0.person_no", 2)),
    ("resident in a household", _set("persons.1.relation_to_head", "resident")),
    ("unknown relation", _set("persons.1.relation_to_head", "cousin")),
    ("person_no 0", _set("persons.1.person_no", 0)),
    ("person extra member", _set("persons.0.iin", "900101300123")),
    ("person without sex", _delete("persons.0.sex")),
    ("sex abbreviated", _set("persons.0.sex", "m")),
    ("birth month 13", _set("persons.0.birth_date", "1990-13-01")),
    ("birth date unpadded", _set("persons.0.birth_date", "1990-1-1")),
    ("birth date with time", _set("persons.0.birth_date", "1990-01-01T00:00")),
    ("citizenship lower case", _set("persons.0.citizenship", "kaz")),
    ("citizenship alpha-2", _set("persons.0.citizenship", "KZ")),
    ("native language upper case", _set("persons.0.native_language", "KAZ")),
    ("surname with digit", _set("persons.0.surname", "Иван0в")),
    ("surname with markup", _set("persons.0.surname", "<script>")),
    ("surname empty", _set("persons.0.surname", "")),
    ("surname 65 letters", _set("persons.0.surname", "Ә" * 65)),
    ("surname leading space", _set("persons.0.surname", " Иванов")),
    ("patronymic null", _set("persons.0.patronymic", None)),
    ("marital status unknown", _set("persons.0.marital_status", "single")),
    ("education unknown", _set("persons.0.education", "phd")),
    ("address without region", _delete("address.region")),
    ("address extra member", _set("address.gps", "43.25,76.95")),
    ("region not a code", _set("address.region", "Almaty")),
    ("house number 0", _set("address.house", "0")),
    ("apartment as integer", _set("address.apartment", 12)),
]

INVALID_INSTITUTION = [
    ("institution without list entry", _delete("respondent_list_entry")),
    ("institution without kind", _delete("institution_kind")),
    ("institution kind unknown", _set("institution_kind", "prison")),
    ("institution code malformed", _set("institution_code", "dd-000123")),
    ("list entry malformed", _set("respondent_list_entry", "DD-000123/7")),
    ("institution with household_id", _set("household_id", "HH-00000001")),
    ("institution filled by interviewer", _set("worker_role", "interviewer")),
    ("two residents on one sheet", _two_residents),
    ("resident marked as head", _set("persons.0.relation_to_head", "head")),
    ("unknown source", _set("source", "neighbours")),
]


@pytest.mark.parametrize(("name", "mutate"), INVALID_HOUSEHOLD, ids=[c[0] for c in INVALID_HOUSEHOLD])
def test_broken_household_sheet_fails(validator: Draft202012Validator, name: str, mutate: Callable) -> None:
    sheet = copy.deepcopy(_first("household"))
    assert validator.is_valid(sheet)
    mutate(sheet)
    assert not validator.is_valid(sheet), name


@pytest.mark.parametrize(("name", "mutate"), INVALID_INSTITUTION, ids=[c[0] for c in INVALID_INSTITUTION])
def test_broken_institution_sheet_fails(validator: Draft202012Validator, name: str, mutate: Callable) -> None:
    sheet = copy.deepcopy(_first("institution"))
    assert validator.is_valid(sheet)
    mutate(sheet)
    assert not validator.is_valid(sheet), name


def test_sheet_validator_error_names_path_not_value() -> None:
    sheet = copy.deepcopy(_first("household"))
    sheet["persons"][0]["surname"] = "Иван0в"
    with pytest.raises(InvalidSheetError) as info:
        SheetValidator().check(sheet)
    text = str(info.value)
    assert "S-23 /persons/0/surname" in text  # rule id and JSON pointer (docs/census-sheet.md)
    assert "Иван0в" not in text  # personal data stays out of errors and logs
    assert info.value.facts["sheet_id"] == sheet["sheet_id"]
