"""``sanaq-gateway conformance`` in a subprocess, exercised by the reference tablet client in subprocesses."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tablet.generator import generate_sheets
from tablet.identity import load_identity
from tablet.outbox import Outbox
from tests.gateway.harness import now_ms

REPO = Path(__file__).resolve().parents[2]


class Kit:
    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.ready = ready

    async def stop(self) -> tuple[int, dict[str, Any]]:
        """SIGINT (what Ctrl-C sends), then the report line and the exit code."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stdout is not None
        out = await asyncio.wait_for(self.proc.stdout.read(), 60)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        return code, lines[-1]


@pytest.fixture
async def kit_factory(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[asyncio.subprocess.Process] = []

    async def start(*extra: str) -> Kit:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "conformance", "--workdir", str(tmp_path / "kit"), "--json",
            "--duration", "120", *extra, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        started.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        ready = json.loads(line)
        assert ready["event"] == "ready" and ready["url"].startswith("https://127.0.0.1:")
        return Kit(proc, ready)

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def tablet(home: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tablet", "--home", str(home), *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def endings(report: dict[str, Any]) -> dict[str, str]:
    return {s["scenario"]: s["ending"] for s in report["scenarios"]}


async def test_reference_tablet_passes_the_conformance_kit(kit_factory: Any, tmp_path: Path) -> None:
    kit = await kit_factory()
    home = tmp_path / "home"
    assert (await tablet(home, "init", "--bundle", kit.ready["bundle"]))[0] == 0
    assert (await tablet(home, "fill", "--seed", "3", "--count", "25"))[0] == 0
    code, out = await tablet(home, "--json", "sync", "--max-per-batch", "10")
    assert code == 0, out
    code, report = await kit.stop()
    assert endings(report) == {
        "batch-accepted": "accepted",
        "lost-response": "idempotent-resend",  # the kit dropped the first answer; the tablet resent the same bytes
        "clock-skew": "recovered",  # the kit's clock ran 600 s ahead; the tablet corrected itself
        "sheets": "all-valid",
        "other-refusals": "none",
        "sync-state": "read",
        "registry": "not-exercised",  # the reference client does not refresh its snapshot (a SHOULD)
        "assignments": "fetched",  # the reference client fetches them on every sync
    }
    assert report["passed"] is True and code == 0


async def test_kit_reports_what_was_not_exercised_and_fails(kit_factory: Any, tmp_path: Path) -> None:
    kit = await kit_factory("--clock-offset-s", "0", "--keep-first-response")
    home = tmp_path / "home"
    assert (await tablet(home, "init", "--bundle", kit.ready["bundle"]))[0] == 0
    assert (await tablet(home, "fill", "--seed", "3", "--count", "5"))[0] == 0
    assert (await tablet(home, "sync"))[0] == 0
    code, report = await kit.stop()
    found = endings(report)
    assert found["batch-accepted"] == "accepted"
    assert found["lost-response"] == "not-exercised" and found["clock-skew"] == "not-exercised"
    assert report["passed"] is False and code == 1


async def test_kit_names_the_rule_a_quarantined_sheet_broke(kit_factory: Any, tmp_path: Path) -> None:
    kit = await kit_factory()
    home = tmp_path / "home"
    assert (await tablet(home, "init", "--bundle", kit.ready["bundle"]))[0] == 0
    identity = load_identity(home)
    bad = generate_sheets(5, 2, device_id=identity.device_id)
    bad[1]["persons"][0]["birth_date"] = "2021-01-01"  # after the census moment: S-52
    with Outbox.open(home / "outbox.db", device_id=identity.device_id, now_ms=now_ms()) as outbox:
        outbox.add_sheets(bad, now_ms=now_ms())  # no validator: a client that skips the rules
    assert (await tablet(home, "sync"))[0] == 0
    code, report = await kit.stop()
    assert endings(report)["sheets"] == "quarantined:1 (S-52)"
    assert report["passed"] is False and code == 1
