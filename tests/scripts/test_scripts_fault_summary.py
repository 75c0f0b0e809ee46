"""The threat model's fault table is exactly what the committed ledger of the last ``make faults`` run says.

``docs/fault-ledger.jsonl`` is the ledger ``make faults`` wrote (one JSON line
per fault/attack test, with what it measured); ``docs/threat-model.md`` holds
the table rendered from it. A hand edit of either, or a table left from an
older run, fails here, in the normal suite. The other tests pin the rules of
the summary: unmeasured numbers are ``-``, never 0, and the check fails on any
accepted forgery, loss, duplicate, crash or test that did not pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from scripts.fault_summary import COUNTERS, check, read_ledger, render, section, summarize
from tests.faults.conftest import FaultLedger

REPO = Path(__file__).resolve().parents[2]
LEDGER = REPO / "docs" / "fault-ledger.jsonl"
DOC = REPO / "docs" / "threat-model.md"


def test_the_threat_model_table_is_the_committed_ledger() -> None:
    assert LEDGER.exists(), "docs/fault-ledger.jsonl is missing: run `make faults` and commit it"
    table = render(summarize(read_ledger(LEDGER)))
    assert section(DOC.read_text(encoding="utf-8")) == table, "run `make faults` and commit the ledger and the table"


def _fault_tests() -> set[str]:
    """Every test function of tests/faults that takes the ``fault_ledger`` fixture, as 'module::name'."""
    found = set()
    for path in sorted((REPO / "tests" / "faults").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
                    and any(a.arg == "fault_ledger" for a in node.args.args + node.args.kwonlyargs)):
                found.add(f"{path.stem}::{node.name}")
    return found


def test_the_committed_ledger_is_of_a_whole_run_that_passed() -> None:
    lines = read_ledger(LEDGER)
    ran = {f"{line['module']}::{str(line['test']).split('::')[1].split('[')[0]}" for line in lines}
    assert _fault_tests() - ran == set(), "tests missing from the ledger: run the whole `make faults`"
    assert check(summarize(lines)) == []
    assert all(set(line) - {"test", "module", "outcome"} <= set(COUNTERS) for line in lines)


def line(module: str, outcome: str = "passed", **counts: int) -> dict[str, object]:
    return {"test": f"tests/faults/{module}.py::t", "module": module, "outcome": outcome, **counts}


def test_a_number_no_test_measured_is_a_dash_and_a_measured_zero_is_zero() -> None:
    rows = summarize([line("test_faults_crash", inputs=5, faults=2, lost=0),
                      line("test_attack_requests", inputs=1, forgeries_tried=1, forgeries=0)])
    table = render(rows).splitlines()
    crash = next(r for r in table if r.startswith("| Gateway SIGKILLed"))
    attack = next(r for r in table if r.startswith("| Request-signature"))
    # tests | passed | failed | inputs | faults | forgeries tried | accepted | lost | duplicates | crashes
    assert crash.split(" | ")[1:] == ["1", "1", "0", "5", "2", "-", "-", "0", "-", "- |"]
    assert attack.split(" | ")[1:] == ["1", "1", "0", "1", "-", "1", "0", "-", "-", "- |"]
    assert table[-1] == "| **total** | **2** | **2** | **0** | **6** | **2** | **1** | **0** | **0** | **-** | **-** |"


@pytest.mark.parametrize(
    ("lines", "problems"),
    [
        ([line("m", forgeries_tried=3, forgeries=0, lost=0, duplicates=0, crashes=0)], []),
        ([line("m", forgeries_tried=3, forgeries=1)], ["forgeries=1"]),
        ([line("m", lost=2), line("n", duplicates=1)], ["lost=2", "duplicates=1"]),
        ([line("m", crashes=1)], ["crashes=1"]),
        ([line("m", outcome="failed"), line("m", outcome="skipped")], ["tests not passed=2"]),
    ],
    ids=["clean", "forgery-accepted", "lost-and-duplicated", "crash", "failed-or-skipped"],
)
def test_the_check_fails_on_every_must_be_zero_number_and_on_tests_that_did_not_pass(
    lines: list[dict[str, object]], problems: list[str]
) -> None:
    assert check(summarize(lines)) == problems


@pytest.mark.parametrize(
    ("counts", "problem"),
    [
        ({"forgeries_tried": 2, "forgeries": 1}, None),
        ({"inputs": 1, "faults": 0}, None),
        ({"forgeries": 0}, "forgeries accepted are counted but not the forgeries tried"),
        ({"forgeries_tried": 1, "forgeries": 2}, "2 forgeries accepted of 1 tried"),
    ],
    ids=["accepted-of-tried", "no-forgeries-measured", "accepted-without-tried", "more-accepted-than-tried"],
)
def test_a_ledger_cannot_claim_forgeries_accepted_it_did_not_try(counts: dict[str, int], problem: str | None) -> None:
    ledger = FaultLedger(test="t", module="m")
    ledger.add(**counts)
    assert ledger.problem() == problem


def test_a_ledger_refuses_an_unknown_counter() -> None:
    with pytest.raises(AssertionError, match="unknown ledger counters"):
        FaultLedger(test="t", module="m").add(forgeries_acepted=1)
