"""The census-sheet JSON Schema (``wire/schemas/census-sheet-1.schema.json``) as a validator.

Errors name the sheet id, the JSON path and the failing keyword only: the
jsonschema message repeats the offending value, which is personal data and must
not reach logs or error output.
"""

from __future__ import annotations

import json
from functools import cached_property
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

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
    """Checks sheets against the schema; build once, reuse (compiling the schema is the slow part)."""

    @cached_property
    def _validator(self) -> Draft202012Validator:
        schema = load_sheet_schema()
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(schema)

    def problems(self, sheet: Any) -> list[tuple[str, str]]:
        """(JSON path, keyword) of every violation, in a stable order; empty when valid."""
        found = {(e.json_path, str(e.validator)) for e in self._validator.iter_errors(sheet)}
        return sorted(found)

    def check(self, sheet: Any) -> None:
        """Raise ``InvalidSheetError`` naming the first violations (paths and keywords only)."""
        problems = self.problems(sheet)
        if problems:
            sheet_id = sheet.get("sheet_id") if isinstance(sheet, dict) else None
            shown = "; ".join(f"{path}: {kw}" for path, kw in problems[:5])
            raise InvalidSheetError(
                "sheet fails the census-sheet schema",
                sheet_id=sheet_id if isinstance(sheet_id, str) and len(sheet_id) <= 36 else None,
                problems=shown,
            )
