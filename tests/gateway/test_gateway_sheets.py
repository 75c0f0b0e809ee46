"""Sheet validation: the two validators agree; vectors/sheets.json through the gateway (in process and over HTTP)."""

from __future__ import annotations

import copy
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.sheets import SheetValidator, load_sheet_schema
from runtime.toml_config import ConfigError
from tablet.generator import KindMix, generate_sheets
from tablet.sheet_schema import SheetValidator as TabletSheetValidator
from wire import parse_receipt
from wire.census_sheet import CensusMoment

from .harness import Gateway, World, post_batch, receipt_bytes

VALIDATOR = SheetValidator()
SHEETS = generate_sheets(11, 40, device_id="TAB-0001") + generate_sheets(
    12, 20, device_id="TAB-0001", mix=KindMix.only(hospital=1, boarding_school=1)
)

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=40))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def test_generated_sheets_are_valid_for_both() -> None:
    for sheet in SHEETS:
        assert VALIDATOR.reason(sheet) is None
        assert not list(VALIDATOR._validator.iter_errors(sheet))


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(SHEETS) - 1), pick=st.integers(0, 10_000), leaf=LEAVES)
def test_fast_and_reference_validators_agree_on_mutated_sheets(index: int, pick: int, leaf: Any) -> None:
    sheet = copy.deepcopy(SHEETS[index])
    paths = _paths(sheet)
    mutated = _set(sheet, paths[pick % len(paths)], leaf)
    if not isinstance(mutated, dict):
        assert VALIDATOR.reason(mutated) == "S-1"
        return
    reference_ok = not list(VALIDATOR._validator.iter_errors(mutated))
    assert VALIDATOR._fast.is_valid(mutated) == reference_ok
    reason = VALIDATOR.reason(mutated)
    if not reference_ok:  # a schema failure always gives a reason; a schema-valid one may break a cross-field rule
        assert reason is not None and re.fullmatch(r"S-(1?[0-9]|[2-4][0-9])( /\S*)?", reason), reason


# --- vectors/sheets.json: every case through the gateway's validator and the tablet's ---------------------

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "sheets.json").read_text(encoding="utf-8"))
CASES = VECTORS["cases"]
MOMENT = CensusMoment.parse(VECTORS["census"]["date"], VECTORS["census"]["utc_offset_minutes"])


def _expected(case: dict[str, Any]) -> str | None:
    return None if case["expected"] == "ok" else case["reason"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_sheet_vector_through_the_gateway_validator(case: dict[str, Any]) -> None:
    validator = SheetValidator(max_sheet_bytes=VECTORS["max_sheet_bytes"], census=MOMENT)
    assert validator.reason(case["sheet"]) == _expected(case)


@pytest.mark.parametrize("case", [c for c in CASES if c["expected"] != "ok" and c["rule"] != "S-60"],
                         ids=[c["name"] for c in CASES if c["expected"] != "ok" and c["rule"] != "S-60"])
def test_sheet_vector_through_the_tablet_validator(case: dict[str, Any]) -> None:
    problems = TabletSheetValidator(census=MOMENT).problems(case["sheet"])
    assert (case["pointer"], case["rule"]) in problems


def test_every_rule_has_an_invalid_vector() -> None:
    schema = load_sheet_schema()
    rules = set(schema["x-cross-field-rules"]) | set(re.findall(r'"x-rule": "(S-\d+)"', json.dumps(schema)))
    assert rules == {c["rule"] for c in CASES if c["expected"] != "ok"}


def test_valid_vectors_pass_the_tablet_validator() -> None:
    for case in CASES:
        if case["expected"] == "ok":
            assert TabletSheetValidator(census=MOMENT).problems(case["sheet"]) == [], case["name"]


def test_generated_sheets_follow_the_cross_field_rules() -> None:
    for mix in (KindMix(), KindMix.only(childrens_home=1, boarding_school=1, hospital=1, social_care_centre=1)):
        for sheet in generate_sheets(21, 400, device_id="TAB-0009", mix=mix):
            assert VALIDATOR.reason(sheet) is None, sheet["sheet_id"]


def test_reasons_never_carry_the_value() -> None:
    planted = "Zhumabaeva"
    for case in CASES:
        if case["expected"] == "ok" and isinstance(case["sheet"], dict) and case["sheet"]["form"] == "household":
            sheet = copy.deepcopy(case["sheet"])
            for field, value in (("surname", planted + "1"), ("birth_date", "2099-01-01"), ("sex", planted)):
                sheet["persons"][0][field] = value
                reason = VALIDATOR.reason(sheet) or ""
                assert reason.startswith("S-") and planted not in reason and "2099" not in reason
            return
    raise AssertionError("no household vector")


def test_the_configured_census_moment_drives_the_date_rules(tmp_path: Path) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text('[server]\nplain_http = true\n[census]\nmoment = "2026-10-01"\nutc_offset_minutes = 300\n')
    config = load_config(toml)
    validator = SheetValidator(census=config.census.census_moment())
    sheet = copy.deepcopy(CASES[0]["sheet"])
    assert validator.reason(sheet) == "S-50 /census_moment"
    sheet["census_moment"] = "2026-10-01"
    assert validator.reason(sheet) == "S-51 /filled_at_ms"
    sheet["filled_at_ms"] = config.census.census_moment().instant_ms
    assert validator.reason(sheet) is None
    toml.write_text('[server]\nplain_http = true\n[census]\nmoment = "2026-02-30"\n')
    with pytest.raises(ConfigError, match="census"):
        load_config(toml)


async def test_vector_sheets_over_http_are_stored_or_quarantined_by_rule(world: World, gw: Gateway, session) -> None:
    sheets = [c["sheet"] for c in CASES if c.get("rule") != "S-60"]  # a 64 KiB sheet: covered in process
    expected = [_expected(c) for c in CASES if c.get("rule") != "S-60"]
    envelope = world.batch("TAB-0001", 1, sheets)
    status, answer = await post_batch(session, gw, envelope, world.tablets["TAB-0001"])
    assert status == 200, answer
    receipt = parse_receipt(receipt_bytes(answer), world.gateway_keys)
    assert receipt.sheets_accepted == expected.count(None)
    assert receipt.sheets_quarantined == len(expected) - expected.count(None)
    with sqlite3.connect(gw.db_path) as conn:
        rows = dict(conn.execute("SELECT idx, reason FROM quarantine").fetchall())
    assert {i: r for i, r in enumerate(expected) if r is not None} == rows
