"""The fleet simulator against a real gateway that trusts a real authority; generated sheets vs the gateway's schema."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.sheets import SheetValidator as GatewaySheetValidator
from keys import Authority
from tablet.fleet import FleetConfig, simulate_fleet
from tablet.generator import KindMix, generate_sheets
from tablet.sync_policy import SyncConfig
from tests.gateway.harness import now_ms
from wire import parse_receipt

from .test_tablet_sync_bed import GatewayBed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def authority_and_gateway(tmp_path: Path) -> AsyncIterator[tuple[Authority, GatewayBed]]:
    authority = Authority.create(tmp_path / "authority", now_ms=now_ms())
    bed = await GatewayBed.of_authority(authority, tmp_path / "census.db").start()  # TLS, census CA
    yield authority, bed
    await bed.stop()
    authority.close()


async def test_five_tablets_twenty_sheets_all_receipts_verified(
    authority_and_gateway: tuple[Authority, GatewayBed], tmp_path: Path
) -> None:
    authority, bed = authority_and_gateway
    receipts_file = tmp_path / "receipts.jsonl"
    config = FleetConfig(sync=SyncConfig(gateway_url=bed.url, ca_cert_path=authority.ca_cert_path),
                         tablets=5, sheets_per_tablet=20, max_per_batch=10, seed=11, fleet_id="fleet-a")
    report = await simulate_fleet(authority, config, tmp_path / "work", receipts_out=receipts_file)

    assert (report.tablets, report.sheets, report.batches_sealed) == (5, 100, 10)
    assert (report.receipts_verified, report.stored, report.duplicates, report.pending_after) == (10, 10, 0, 0)
    assert report.all_delivered and report.stopped == () and report.outcomes == (("complete", 5),)
    assert (report.sheets_receipted, report.sheets_quarantined) == (100, 0)
    assert report.registry_version == 2  # the authority's first snapshot, then the fleet's
    assert report.latency_p50_ms is not None and report.latency_p50_ms <= report.latency_p99_ms
    assert report.sheets_per_s > 0

    lines = [json.loads(line) for line in receipts_file.read_text().splitlines()]
    stored = bed.stored()
    assert sorted((r["device_id"], r["seq"]) for r in lines) == sorted(stored)  # exactly these, once each
    assert len(stored) == 10 and {d for d, _ in stored} == {f"fleet-a-{i:05d}" for i in range(1, 6)}
    for line in lines:  # each receipt verifies on its own with the authority's gateway key
        receipt = parse_receipt(base64.b64decode(line["receipt"]), authority.gateway_key_map())
        assert receipt.batch_hash == stored[(line["device_id"], line["seq"])][0]
        assert receipt.batch_hash.hex() == line["batch_hash"]


async def test_simulate_cli_json_summary(authority_and_gateway: tuple[Authority, GatewayBed], tmp_path: Path) -> None:
    authority, bed = authority_and_gateway
    authority.close()  # the CLI opens it itself
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tablet", "--json", "simulate", "--authority", str(authority.path),
        "--gateway", bed.url, "--tablets", "2", "--sheets", "6", "--per-batch", "3", "--fleet-id", "cli",
        "--receipts-out", str(tmp_path / "r.jsonl"), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert (summary["receipts_verified"], summary["all_delivered"], summary["refusals"]) == (4, True, {})
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 4
    assert sorted(bed.stored()) == [(f"cli-{t:05d}", s) for t in (1, 2) for s in (1, 2)]


MIXES = [
    pytest.param(KindMix(), id="default"),
    pytest.param(KindMix.only(household=1), id="households"),
    pytest.param(KindMix.only(childrens_home=1, boarding_school=1), id="children-institutions"),
    pytest.param(KindMix.only(hospital=1, social_care_centre=1), id="care-institutions"),
]


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("seed", [1, 2024])
def test_generated_sheets_pass_the_gateways_validator(mix: KindMix, seed: int) -> None:
    validator = GatewaySheetValidator()
    sheets = generate_sheets(seed, 60, device_id="tab-val-01", mix=mix, worker_id="rw-1")
    sorted_sheets = validator.sort(sheets)
    assert [q.reason for q in sorted_sheets.quarantined] == []
    assert len(sorted_sheets.accepted) == 60
