"""Fixtures of the fault and attack suite: the world of keys, sheets, and the fault ledger.

``fault_ledger`` is how a test reports what it tried: inputs sent, faults
injected, and the four numbers that must stay zero (batches lost, batches
stored twice, crashes, forgeries accepted). A test records its measured values
*before* asserting them, so a failing run still reports what it saw. When
``$SANAQ_FAULT_LEDGER`` names a file, each test appends one JSON line to it at
teardown, with its outcome; ``scripts/fault_summary.py`` turns that file into
the summary table of ``docs/threat-model.md`` (``make faults``). Without the
variable the ledger only lives for the test.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tablet.generator import generate_sheets
from tests.gateway.harness import World
from tests.usb_ingest.station_fixtures import env, gw, template  # noqa: F401 - the USB fault tests' fixtures

from .bed import GatewayBed

COUNTERS = ("inputs", "faults", "lost", "duplicates", "crashes", "forgeries")


@dataclass
class FaultLedger:
    test: str
    module: str
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, **counts: int) -> None:
        unknown = set(counts) - set(COUNTERS)
        assert not unknown, f"unknown ledger counters {unknown}"
        self.counts.update(counts)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and report.failed):
        item.stash[_OUTCOME] = report.outcome if not hasattr(report, "wasxfail") else "xfailed"
    return report


_OUTCOME = pytest.StashKey[str]()


@pytest.fixture
def fault_ledger(request: pytest.FixtureRequest) -> Iterator[FaultLedger]:
    ledger = FaultLedger(test=request.node.nodeid, module=Path(str(request.node.path)).stem)
    yield ledger
    target = os.environ.get("SANAQ_FAULT_LEDGER")
    if not target:
        return
    outcome = request.node.stash.get(_OUTCOME, "unknown")
    line = {"test": ledger.test, "module": ledger.module, "outcome": outcome}
    line.update({k: ledger.counts.get(k, 0) for k in COUNTERS})
    with Path(target).open("a") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


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
