"""docs/census-sheet.md and the one schema file agree; the pure rule helpers of ``wire.census_sheet``."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from wire.census_sheet import FOUNDING_ORDER_MOMENT, CensusMoment, json_pointer, rule_for_schema_path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "wire" / "schemas" / "census-sheet-1.schema.json"
DOC = (ROOT / "docs" / "census-sheet.md").read_text(encoding="utf-8")
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
ROW = re.compile(r"^\| `([a-z_]+)` \| (S-\d+) \| ([a-z]+) \|", re.MULTILINE)
DEFINED = re.compile(r"^- \*\*(S-\d+)\*\* ", re.MULTILINE)
CODE_ROW = re.compile(r"^\| `([a-z_]+)` \| [^|`]", re.MULTILINE)


def _x_rules(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if "x-rule" in node:
            found.add(node["x-rule"])
        for value in node.values():
            found |= _x_rules(value)
    elif isinstance(node, list):
        for value in node:
            found |= _x_rules(value)
    return found


def _enums(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        found.update(v for v in node.get("enum", ()) if isinstance(v, str))
        for value in node.values():
            found |= _enums(value)
    elif isinstance(node, list):
        for value in node:
            found |= _enums(value)
    return found


def _member_tables() -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2), m.group(3)) for m in ROW.finditer(DOC)}


def test_every_rule_id_is_in_the_schema_and_the_doc_and_nowhere_else() -> None:
    in_schema = _x_rules(SCHEMA) | set(SCHEMA["x-cross-field-rules"])
    in_doc = set(DEFINED.findall(DOC)) | {rule for rule, _ in _member_tables().values()}
    assert in_schema == in_doc
    assert len(DEFINED.findall(DOC)) == len(set(DEFINED.findall(DOC)))  # each sentence once


def test_every_member_is_documented_with_its_rule_and_presence() -> None:
    tables = _member_tables()
    groups = [
        (SCHEMA, SCHEMA["properties"], set(SCHEMA["required"])),
        (SCHEMA["$defs"]["address"], SCHEMA["$defs"]["address"]["properties"],
         set(SCHEMA["$defs"]["address"]["required"])),
        (SCHEMA["$defs"]["person"], SCHEMA["$defs"]["person"]["properties"],
         set(SCHEMA["$defs"]["person"]["required"])),
    ]
    then_required = set(SCHEMA["allOf"][0]["then"]["required"])
    else_required = set(SCHEMA["allOf"][0]["else"]["required"])
    documented = 0
    for _, members, required in groups:
        for name, sub in members.items():
            rule, req = tables[name]
            assert rule == sub["x-rule"], name
            expected = ("yes" if name in required else "household" if name in then_required
                        else "institution" if name in else_required else "no")
            assert req == expected, name
            documented += 1
    assert documented == len(tables)


def test_every_code_of_every_code_list_is_documented() -> None:
    codes = set(CODE_ROW.findall(DOC))
    assert _enums(SCHEMA) <= codes, sorted(_enums(SCHEMA) - codes)
    consts = {"interview", "interviewer", "responsible_worker", "head", "resident"}
    assert consts <= codes


def test_the_doc_links_the_one_schema_file_and_the_vectors() -> None:
    assert "(../vectors/census-sheet-1.schema.json)" in DOC  # the published copy, kept equal by generate.py
    assert "(../vectors/sheets.json)" in DOC
    assert not list((ROOT / "docs").rglob("*.schema.json"))  # no unchecked copy to drift
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert "(census-sheet.md)" in protocol


def test_census_moment_is_not_fixed_in_the_schema() -> None:
    moment = SCHEMA["properties"]["census_moment"]
    assert "pattern" not in moment and moment["$ref"] == "#/$defs/date"
    assert "2020" not in json.dumps(moment) or "founding order" in moment["description"]


@pytest.mark.parametrize(
    ("moment", "instant_ms"),
    [
        (FOUNDING_ORDER_MOMENT, 1601488800000),  # 2020-09-30T18:00Z
        (CensusMoment(date(2020, 10, 1), 0), 1601510400000),
        (CensusMoment(date(2026, 10, 1), 300), 1790794800000),
    ],
)
def test_census_moment_instant(moment: CensusMoment, instant_ms: int) -> None:
    assert moment.instant_ms == instant_ms


@pytest.mark.parametrize("text", ["2020-10-1", "2020-02-30", "20201001", "", "2020-10-01T00:00"])
def test_census_moment_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="census moment"):
        CensusMoment.parse(text)


def test_json_pointer_escapes() -> None:
    assert json_pointer(["persons", 0, "a/b~c"]) == "/persons/0/a~1b~0c"
    assert json_pointer([]) == ""


def test_extra_member_with_an_odd_name_is_not_echoed() -> None:
    problem = rule_for_schema_path(SCHEMA, ["additionalProperties"], keyword="additionalProperties",
                                   instance_path=[], instance={"Иванов Пётр": 1})
    assert problem.reason == "S-1"


def test_the_doc_example_is_the_vector_sheet() -> None:
    block = DOC.split("## 5. Examples", 1)[1].split("```\n", 2)[1]
    vectors = json.loads((ROOT / "vectors" / "sheets.json").read_text(encoding="utf-8"))
    case = next(c for c in vectors["cases"] if c["name"] == "household-one-person")
    assert json.loads(block) == case["sheet"]
    assert vectors["census"] == {"date": FOUNDING_ORDER_MOMENT.day.isoformat(),
                                 "utc_offset_minutes": FOUNDING_ORDER_MOMENT.utc_offset_minutes}
