"""Census sheet validation: the JSON Schema in ``wire/schemas`` plus the cross-field rules of ``wire.census_sheet``.

A sheet that fails is quarantined with its reason, never dropped. A reason is
the id of the first rule the sheet breaks (docs/census-sheet.md) and the JSON
pointer of the offending value, e.g. ``S-27 /persons/0/birth_date``; it never
echoes the sheet's values, so it can be shown to staff or logged without
personal data.

Two validators hold the same schema: ``jsonschema_rs`` (compiled, ~20x
faster) decides whether a sheet is valid, and the ``jsonschema`` reference
implementation runs only for a sheet the fast one refuses, to find the rule
and to confirm the refusal (a sheet is quarantined for a schema rule only when
both agree it is invalid). The date rules use the configured census moment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError

from wire import canonical
from wire.census_sheet import (
    FOUNDING_ORDER_MOMENT,
    OVERSIZE_RULE,
    CensusMoment,
    SheetProblem,
    cross_field_problems,
    rule_for_schema_path,
)

from .person_key import person_key
from .store import QuarantinedSheet, StoredSheet

__all__ = ["SHEET_SCHEMA_NAME", "SheetValidator", "Sorted", "load_sheet_schema"]

SHEET_SCHEMA_NAME = "census-sheet/1"


def load_sheet_schema() -> dict[str, Any]:
    """The schema as shipped in the ``wire`` package data (the one file docs/census-sheet.md describes)."""
    text = resources.files("wire").joinpath("schemas/census-sheet-1.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class Sorted:
    accepted: tuple[StoredSheet, ...]
    quarantined: tuple[QuarantinedSheet, ...]


class SheetValidator:
    def __init__(self, *, max_sheet_bytes: int = 64 * 1024, census: CensusMoment = FOUNDING_ORDER_MOMENT) -> None:
        schema = load_sheet_schema()
        Draft202012Validator.check_schema(schema)
        self._schema = schema
        self._validator = Draft202012Validator(schema)
        self._fast = jsonschema_rs.Draft202012Validator(schema)
        self._max_sheet_bytes = max_sheet_bytes
        self.census = census

    def problem(self, sheet: Any, encoded_len: int | None = None) -> SheetProblem | None:
        """None if ``sheet`` is valid, else the first rule it breaks (value-free)."""
        if not isinstance(sheet, dict):
            return SheetProblem("S-1", "")
        size = len(canonical.encode(sheet)) if encoded_len is None else encoded_len
        if size > self._max_sheet_bytes:
            return SheetProblem(OVERSIZE_RULE, "")
        if not self._fast.is_valid(sheet):
            found = sorted((self._schema_problem(e) for e in self._validator.iter_errors(sheet)), key=_order)
            if found:
                return found[0]
        crossed = cross_field_problems(sheet, self.census)
        return crossed[0] if crossed else None

    def reason(self, sheet: Any, encoded_len: int | None = None) -> str | None:
        """None if ``sheet`` is valid, else ``"<rule id> <JSON pointer>"`` of the first failure."""
        found = self.problem(sheet, encoded_len)
        return None if found is None else found.reason

    def _schema_problem(self, error: ValidationError) -> SheetProblem:
        return rule_for_schema_path(
            self._schema,
            list(error.schema_path),
            keyword=str(error.validator),
            instance_path=list(error.absolute_path),
            instance=error.instance,
        )

    def sort(self, sheets: Sequence[Any], encoded: Sequence[bytes] | None = None) -> Sorted:
        """Accepted and quarantined sheets with their canonical JSON.

        ``encoded``: each sheet's canonical bytes when the caller has them
        (``wire.open_batch`` cuts them from the plaintext); else encoded here.
        """
        if encoded is not None and len(encoded) != len(sheets):
            raise ValueError("one encoding per sheet")
        accepted: list[StoredSheet] = []
        quarantined: list[QuarantinedSheet] = []
        for index, sheet in enumerate(sheets):
            encoded_sheet = canonical.encode(sheet) if encoded is None else encoded[index]
            body = encoded_sheet.decode("utf-8")
            address = sheet.get("address") if isinstance(sheet, dict) else None
            why = self.reason(sheet, len(encoded_sheet))
            if why is None:
                accepted.append(
                    StoredSheet(
                        index=index,
                        sheet_id=_text(sheet.get("sheet_id")),
                        institution_code=_text(sheet.get("institution_code")),
                        respondent_list_entry=_text(sheet.get("respondent_list_entry")),
                        body_json=body,
                        person_key=person_key(sheet),
                        source=_text(sheet.get("source")),
                        region=_text(address.get("region")) if isinstance(address, dict) else None,
                    )
                )
            else:
                quarantined.append(QuarantinedSheet(index=index, reason=why, body_json=body))
        return Sorted(tuple(accepted), tuple(quarantined))


def _order(problem: SheetProblem) -> tuple[str, int]:
    return problem.pointer, int(problem.rule[2:])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
