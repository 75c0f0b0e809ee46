"""The census sheet rules (docs/census-sheet.md) as a validator on the tablet.

The schema file is the one the gateway loads (``wire/schemas/census-sheet-1.schema.json``);
the cross-field rules come from ``wire.census_sheet``. Errors name the sheet
id, the rule ids and JSON pointers only: the jsonschema message repeats the
offending value, which is personal data and must not reach logs or error output.
"""

from __future__ import annotations

import json
from functools import cached_property
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from wire.census_sheet import FOUNDING_ORDER_MOMENT, CensusMoment, cross_field_problems, rule_for_schema_path

from .errors import InvalidSheetError

__all__ = ["SHEET_SCHEMA_NAME", "SheetValidator", "load_sheet_schema"]

SHEET_SCHEMA_NAME = "census-sheet/1"
_SCHEMA_FILE = "census-sheet-1.schema.json"


def load_sheet_schema() -> dict[str, Any]:
    """The schema document as shipped in the ``wire`` package data."""
    text = resources.files("wire").joinpath("schemas", _SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


class SheetValidator:
    """Checks sheets against the rules; build once, reuse (compiling the schema is the slow part)."""

    def __init__(self, census: CensusMoment = FOUNDING_ORDER_MOMENT) -> None:
        self.census = census

    @cached_property
    def _schema(self) -> dict[str, Any]:
        schema = load_sheet_schema()
        Draft202012Validator.check_schema(schema)
        return schema

    @cached_property
    def _validator(self) -> Draft202012Validator:
        return Draft202012Validator(self._schema)

    def problems(self, sheet: Any) -> list[tuple[str, str]]:
        """(JSON pointer, rule id) of every violation, in a stable order; empty when valid.

        The cross-field rules are checked only on a sheet the schema accepts.
        """
        found = {
            rule_for_schema_path(
                self._schema,
                list(e.schema_path),
                keyword=str(e.validator),
                instance_path=list(e.absolute_path),
                instance=e.instance,
            )
            for e in self._validator.iter_errors(sheet)
        }
        if not found and isinstance(sheet, dict):
            found = set(cross_field_problems(sheet, self.census))
        return sorted((p.pointer, p.rule) for p in found)

    def check(self, sheet: Any) -> None:
        """Raise ``InvalidSheetError`` naming the first violations (rule ids and pointers only)."""
        problems = self.problems(sheet)
        if problems:
            sheet_id = sheet.get("sheet_id") if isinstance(sheet, dict) else None
            shown = "; ".join(f"{rule} {pointer}".rstrip() for pointer, rule in problems[:5])
            raise InvalidSheetError(
                "sheet breaks the census-sheet rules",
                sheet_id=sheet_id if isinstance(sheet_id, str) and len(sheet_id) <= 36 else None,
                problems=shown,
            )
