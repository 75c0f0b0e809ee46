"""Fixtures of the fault and attack suite: the world of keys, sheets, and the fault ledger.

``fault_ledger`` is how a test reports what it observed: inputs sent, faults
that actually fired, forgeries presented to the system (``forgeries_tried``) and
the four numbers that must stay zero (batches lost, batches stored twice,
crashes, forgeries accepted: ``forgeries``). Only what a test measured is
recorded: a counter it never adds is "not measured", not 0, and a test that
counts accepted forgeries must count the attempts too (checked at teardown:
accepted <= tried). A test records its values *before* asserting them, so a
failing run still reports what it saw. When ``$SANAQ_FAULT_LEDGER`` names a
file, each test appends one JSON line to it at teardown, with its outcome;
``scripts/fault_summary.py`` turns that file into the summary table of
``docs/threat-model.md`` (``make faults`` writes ``docs/fault-ledger.jsonl``).
Without the variable the ledger only lives for the test.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scripts.fault_summary import COUNTERS
from tablet.generator import generate_sheets
from tests.gateway.harness import World
from tests.usb_ingest.station_fixtures import env, gw, template  # noqa: F401 - the USB fault tests' fixtures

from .bed import GatewayBed


@dataclass
class FaultLedger:
    test: str
    module: str
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, **counts: int) -> None:
        unknown = set(counts) - set(COUNTERS)
        assert not unknown, f"unknown ledger counters {unknown}"
        self.counts.update(counts)

    def problem(self) -> str | None:
        """Why the counts cannot be true, if they cannot."""
        if "forgeries" in self.counts and "forgeries_tried" not in self.counts:
            return "forgeries accepted are counted but not the forgeries tried"
        if self.counts["forgeries"] > self.counts["forgeries_tried"]:
            return f"{self.counts['forgeries']} forgeries accepted of {self.counts['forgeries_tried']} tried"
        return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and report.failed):
        item.stash[_OUTCOME] = report.outcome
    return report


_OUTCOME = pytest.StashKey[str]()


@pytest.fixture
def fault_ledger(request: pytest.FixtureRequest) -> Iterator[FaultLedger]:
    ledger = FaultLedger(test=request.node.nodeid, module=Path(str(request.node.path)).stem)
    yield ledger
    problem = ledger.problem()
    target = os.environ.get("SANAQ_FAULT_LEDGER")
    if target:
        outcome = request.node.stash.get(_OUTCOME, "unknown")
        line: dict[str, object] = {"test": ledger.test, "module": ledger.module,
                                   "outcome": "failed" if problem else outcome}
        line.update({k: ledger.counts[k] for k in COUNTERS if k in ledger.counts})
        with Path(target).open("a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
    assert problem is None, f"fault ledger of {ledger.test}: {problem}"


@pytest.fixture
def need_fiu_run() -> None:
    """Fails (never skips) a libfiu test when ``fiu-run`` is missing, naming the tool and its package."""
    if shutil.which("fiu-run") is None:
        pytest.fail("fiu-run not found on PATH: apt-get install fiu-utils (make setup installs it)")


@pytest.fixture
async def make_bed() -> AsyncIterator[Callable[..., GatewayBed]]:
    """``make_bed(world, root, **options)``: a ``GatewayBed`` whose processes are killed at teardown."""
    beds: list[GatewayBed] = []

    def make(world: World, root: Path, **options: Any) -> GatewayBed:
        bed = GatewayBed(world, root, **options)
        beds.append(bed)
        return bed

    yield make
    for bed in beds:
        await bed.kill_all()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def world() -> World:
    return World.make(n_tablets=4, n_stations=1)


def make_sheets(device_id: str, seq: int, n: int = 2) -> list[Any]:
    return generate_sheets(seq, n, device_id=device_id)


@pytest.fixture
def sheets() -> Any:
    return make_sheets
