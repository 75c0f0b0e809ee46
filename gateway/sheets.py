"""Census sheet validation against the JSON Schema kept in ``wire/schemas``.

A sheet that fails is quarantined with its reason, never dropped. Reasons
name the failing JSON path and rule only; they never echo the sheet's values,
so a reason can be shown to staff or logged without personal data.

Two validators hold the same schema: ``jsonschema_rs`` (compiled, ~20x
faster) decides whether a sheet is valid, and the ``jsonschema`` reference
implementation runs only for a sheet the fast one refuses, to word the reason
and to confirm the refusal (a sheet is quarantined only when both agree it is
invalid). The benchmarks showed validation, not cryptography, bounding the
gateway before this (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

from wire import canonical

from .store import QuarantinedSheet, StoredSheet

__all__ = ["SHEET_SCHEMA_NAME", "SheetValidator", "Sorted"]

SHEET_SCHEMA_NAME = "census-sheet/1"


@dataclass(frozen=True, slots=True)
class Sorted:
    accepted: tuple[StoredSheet, ...]
    quarantined: tuple[QuarantinedSheet, ...]


class SheetValidator:
    def __init__(self, *, max_sheet_bytes: int = 64 * 1024) -> None:
        text = resources.files("wire").joinpath("schemas/census-sheet-1.schema.json").read_text("utf-8")
        schema = json.loads(text)
        Draft202012Validator.check_schema(schema)
        self._validator = Draft202012Validator(schema)
        self._fast = jsonschema_rs.Draft202012Validator(schema)
        self._max_sheet_bytes = max_sheet_bytes

    def reason(self, sheet: Any, encoded_len: int | None = None) -> str | None:
        """None if ``sheet`` is valid, else a value-free description of the first failure."""
        if not isinstance(sheet, dict):
            return "sheet is not a JSON object"
        size = len(canonical.encode(sheet)) if encoded_len is None else encoded_len
        if size > self._max_sheet_bytes:
            return f"sheet larger than {self._max_sheet_bytes} bytes"
        if self._fast.is_valid(sheet):
            return None
        error = next(iter(sorted(self._validator.iter_errors(sheet), key=lambda e: list(e.absolute_path))), None)
        if error is None:
            return None
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{path}: fails '{error.validator}'"

    def sort(self, sheets: list[Any]) -> Sorted:
        accepted: list[StoredSheet] = []
        quarantined: list[QuarantinedSheet] = []
        for index, sheet in enumerate(sheets):
            encoded = canonical.encode(sheet)
            body = encoded.decode("utf-8")
            why = self.reason(sheet, len(encoded))
            if why is None:
                accepted.append(
                    StoredSheet(
                        index=index,
                        sheet_id=_text(sheet.get("sheet_id")),
                        institution_code=_text(sheet.get("institution_code")),
                        respondent_list_entry=_text(sheet.get("respondent_list_entry")),
                        body_json=body,
                    )
                )
            else:
                quarantined.append(QuarantinedSheet(index=index, reason=why, body_json=body))
        return Sorted(tuple(accepted), tuple(quarantined))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
