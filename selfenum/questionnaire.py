"""The questionnaire: its pages, built over the one census-sheet schema, and the sheet they make.

Pages name fields and how to ask them; every *rule* (required, pattern,
enum, length) comes from ``wire/schemas/census-sheet-1.schema.json``, the
schema the gateway validates with, so the two cannot drift. Messages are
English msgids translated by the gettext catalogs (``selfenum/locale``).

A respondent of the first-stage lists fills one institution sheet about
themself: ``persons`` holds one person, ``relation_to_head`` is ``resident``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["FIELDS", "PAGES", "Field", "FieldError", "Page", "Questionnaire", "Respondent"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str            # the form field and the key in the answers
    part: str            # "person" or "address": where in the sheet it goes
    label: str           # msgid
    widget: str          # "text", "radios", "date", "select"
    hint: str = ""       # msgid
    required: bool = True
    upper: bool = False  # codes typed in lower case are accepted (kaz -> KAZ)
    missing: str = ""    # msgid when left empty
    invalid: str = ""    # msgid when it breaks the schema's rule


@dataclass(frozen=True, slots=True)
class Page:
    slug: str
    title: str  # msgid
    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str  # msgid


@dataclass(frozen=True, slots=True)
class Respondent:
    """What the access code stands for (from the first-stage list); no name, no answers."""

    entry_id: str
    institution_code: str
    institution_kind: str
    worker_id: str


_NAME_INVALID = "Use letters only (Kazakh, Russian or Latin), with a space, hyphen or apostrophe between words"
PAGES: tuple[Page, ...] = (
    Page("name", "What is your name?", (
        Field("surname", "person", "Surname", "text", missing="Enter your surname", invalid=_NAME_INVALID),
        Field("given_name", "person", "Given name", "text", missing="Enter your given name", invalid=_NAME_INVALID),
        Field("patronymic", "person", "Patronymic (if you have one)", "text", required=False,
              invalid=_NAME_INVALID),
    )),
    Page("about", "About you", (
        Field("sex", "person", "Sex", "radios", missing="Select your sex", invalid="Select your sex"),
        Field("birth_date", "person", "Date of birth", "date", hint="For example, 27 3 1985",
              missing="Enter your date of birth", invalid="Date of birth must be a real date before the census"),
    )),
    Page("origin", "Citizenship, nationality and language", (
        Field("citizenship", "person", "Citizenship", "text", upper=True,
              hint="Three-letter country code, for example KAZ; XXA if you have no citizenship",
              missing="Enter your citizenship", invalid="Enter a three-letter country code, for example KAZ"),
        Field("nationality", "person", "Nationality", "text", hint="As you define it yourself",
              missing="Enter your nationality", invalid=_NAME_INVALID),
        Field("native_language", "person", "Native language", "radios",
              missing="Select your native language", invalid="Select your native language"),
    )),
    Page("status", "Marital status and education", (
        Field("marital_status", "person", "Marital status", "radios",
              missing="Select your marital status", invalid="Select your marital status"),
        Field("education", "person", "Highest education completed", "radios",
              missing="Select your education", invalid="Select your education"),
    )),
    Page("address", "Where do you live?", (
        Field("region", "address", "Region", "text", upper=True, hint="Region code, for example KZ-23 for Atyrau",
              missing="Enter your region", invalid="Enter a region code, for example KZ-23"),
        Field("district", "address", "District", "text", missing="Enter your district",
              invalid="Use letters, digits and . , - ' / only"),
        Field("settlement", "address", "City, town or village", "text", missing="Enter your city, town or village",
              invalid="Use letters, digits and . , - ' / only"),
        Field("street", "address", "Street", "text", missing="Enter your street",
              invalid="Use letters, digits and . , - ' / only"),
        Field("house", "address", "House", "text", upper=True, hint="For example 12, 12A or 7/2",
              missing="Enter your house number", invalid="Enter a house number, for example 12, 12A or 7/2"),
        Field("apartment", "address", "Apartment (if any)", "text", required=False, upper=True,
              invalid="Enter an apartment number, for example 5"),
    )),
)
FIELDS: Mapping[str, Field] = {f.name: f for p in PAGES for f in p.fields}

# Option labels (msgids) for the schema's enum values; the values themselves come from the schema.
OPTION_LABELS: Mapping[str, str] = {
    "male": "Male", "female": "Female",
    "never_married": "Never married", "married": "Married", "cohabiting": "Living together",
    "widowed": "Widowed", "divorced": "Divorced", "separated": "Separated", "not_applicable": "Not applicable",
    "none": "No education", "primary": "Primary", "basic_secondary": "Basic secondary",
    "general_secondary": "General secondary", "technical_vocational": "Technical and vocational",
    "post_secondary": "Post-secondary", "higher": "Higher", "postgraduate": "Postgraduate",
    "kaz": "Kazakh", "rus": "Russian", "uzb": "Uzbek", "uig": "Uyghur", "ukr": "Ukrainian", "tat": "Tatar",
    "deu": "German", "kor": "Korean", "aze": "Azerbaijani", "tur": "Turkish",
}
_LANGUAGES = ("kaz", "rus", "uzb", "uig", "ukr", "tat", "deu", "kor", "aze", "tur")


class Questionnaire:
    """The pages over the schema; validates answers field by field and assembles the sheet."""

    def __init__(self) -> None:
        text = resources.files("wire").joinpath("schemas/census-sheet-1.schema.json").read_text("utf-8")
        self.schema: dict[str, Any] = json.loads(text)
        Draft202012Validator.check_schema(self.schema)
        self._sheet = Draft202012Validator(self.schema)
        defs = self.schema["$defs"]
        self._field_schema: dict[str, dict[str, Any]] = {}
        for f in FIELDS.values():
            props = defs[f.part]["properties"]
            self._field_schema[f.name] = {"$defs": defs, **props[f.name]}
        self._validators = {n: Draft202012Validator(s) for n, s in self._field_schema.items()}

    def options(self, name: str) -> tuple[str, ...]:
        """The values a radio field offers: the schema's enum (institution residents never pick head etc.)."""
        if name == "native_language":
            return _LANGUAGES
        values = self._field_schema[name].get("enum", ())
        return tuple(values)

    def page(self, slug: str) -> Page | None:
        return next((p for p in PAGES if p.slug == slug), None)

    def next_slug(self, slug: str) -> str:
        index = next(i for i, p in enumerate(PAGES) if p.slug == slug)
        return PAGES[index + 1].slug if index + 1 < len(PAGES) else "check"

    def clean(self, page: Page, form: Mapping[str, str], *, moment: date, max_chars: int) -> tuple[
            dict[str, str], list[FieldError]]:
        """The page's answers as the sheet will hold them, and an error per field that breaks a rule."""
        answers: dict[str, str] = {}
        errors: list[FieldError] = []
        for f in page.fields:
            if f.widget == "date":
                raw = _date_text(form, f.name)
            else:
                raw = " ".join(str(form.get(f.name, "")).split())[: max_chars + 1]
            if f.upper:
                raw = raw.upper()
            if raw == "":
                if f.required:
                    errors.append(FieldError(f.name, f.missing))
                continue
            if len(raw) > max_chars or not self.field_valid(f.name, raw, moment=moment):
                errors.append(FieldError(f.name, f.invalid))
                answers[f.name] = raw
                continue
            answers[f.name] = raw
        return answers, errors

    def field_valid(self, name: str, value: str, *, moment: date) -> bool:
        if name == "native_language" and value not in _LANGUAGES:
            return False
        if not self._validators[name].is_valid(value):
            return False
        if FIELDS[name].widget == "date":
            try:
                return date.fromisoformat(value) < moment
            except ValueError:
                return False
        return True

    def missing_pages(self, answers: Mapping[str, str], *, moment: date) -> list[str]:
        """Slugs of pages with a required answer missing or invalid (the check page sends them back there)."""
        out = []
        for p in PAGES:
            for f in p.fields:
                value = answers.get(f.name)
                if (value is None and f.required) or (value is not None and not self.field_valid(
                        f.name, value, moment=moment)):
                    out.append(p.slug)
                    break
        return out

    def sheet(self, answers: Mapping[str, str], who: Respondent, *, moment: date, now_ms: int,
              new_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> dict[str, Any]:
        """The census sheet (schema census-sheet/1) for this respondent; ``ValueError`` if it breaks the schema."""
        person: dict[str, Any] = {"person_no": 1, "relation_to_head": "resident"}
        address: dict[str, Any] = {}
        for name, f in FIELDS.items():
            if name in answers:
                (person if f.part == "person" else address)[name] = answers[name]
        sheet = {
            "sheet_id": new_id(),
            "form": "institution",
            "census_moment": moment.isoformat(),
            "filled_at_ms": now_ms,
            "source": "interview",
            "worker_id": who.worker_id,
            "worker_role": "responsible_worker",
            "institution_code": who.institution_code,
            "institution_kind": who.institution_kind,
            "respondent_list_entry": who.entry_id,
            "address": address,
            "persons": [person],
        }
        error = next(iter(self._sheet.iter_errors(sheet)), None)
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise ValueError(f"sheet breaks the schema at {path} ({error.validator})")
        return sheet


def _date_text(form: Mapping[str, str], name: str) -> str:
    day, month, year = (str(form.get(f"{name}-{part}", "")).strip() for part in ("day", "month", "year"))
    if not (day or month or year):
        return ""
    if not (day.isdigit() and month.isdigit() and year.isdigit() and len(year) == 4 and len(day) <= 2
            and len(month) <= 2):
        return f"{year}-{month}-{day}"[:20]
    return f"{year}-{int(month):02d}-{int(day):02d}"
