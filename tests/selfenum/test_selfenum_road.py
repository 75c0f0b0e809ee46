"""The web road: a web service enrolled in the registry seals and sends its own batches; receipts say web:<id>."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gwclient import GatewayRefused, SignedGatewayClient, parse_retry_after
from keys.bundle import ProvisioningBundle
from wire import parse_receipt, seal_batch
from wire.snapshot import accept_snapshot

from .bed import TABLET_ID, WEB_ID, Env, Gateway, now_ms


def _sheet() -> dict[str, object]:
    return {"sheet_id": "00000000-0000-4000-8000-000000000001", "form": "household"}


def _seal(bundle: ProvisioningBundle, device_id: str, seq: int) -> bytes:
    return seal_batch(device_id=device_id, seq=seq, sheets=[_sheet()], sealed_at_ms=now_ms(),
                      device_key=bundle.signing_key, data_public_key=bundle.data_public_key,
                      ephemeral_secret=os.urandom(32))


def test_enroll_web_cli_lists_the_service_in_the_snapshot(env: Env, tmp_path: Path) -> None:
    env.authority.close()
    out = tmp_path / "bundle-web2"
    proc = subprocess.run(
        [sys.executable, "-m", "keys.cli", "enroll-web", "--authority", str(env.root / "authority"),
         "--web-id", "WEB-AST-02", "--gateway-url", "https://localhost:8443", "--out", str(out), "--json"],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    bundle = ProvisioningBundle.load(out)
    assert bundle.role == "web"
    snap = accept_snapshot(bundle.snapshot, bundle.root_public_key, now_ms=now_ms())
    assert {w.web_id for w in snap.web_services} == {WEB_ID, "WEB-AST-02"}
    assert all(s.station_id not in {WEB_ID, "WEB-AST-02"} for s in snap.stations)
    again = subprocess.run(
        [sys.executable, "-m", "keys.cli", "enroll-web", "--authority", str(env.root / "authority"),
         "--web-id", TABLET_ID, "--gateway-url", "https://localhost:8443", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "already enrolled" in again.stderr


async def test_web_batch_gets_a_web_road_receipt(env: Env, gw: Gateway) -> None:
    web = env.web_bundle()
    envelope = _seal(web, WEB_ID, 1)
    async with SignedGatewayClient(gw.url, web.signing_key, ssl_context=None) as client:
        answer = await client.post_batch(envelope)
        again = await client.post_batch(envelope)
    receipt = parse_receipt(answer.receipt, web.gateway_key_map())
    assert (receipt.road, receipt.device_id, receipt.seq) == (f"web:{WEB_ID}", WEB_ID, 1)
    assert again.duplicate and again.receipt == answer.receipt
    assert gw.rows("SELECT road FROM batches") == [(f"web:{WEB_ID}",)]


@pytest.mark.parametrize(("sender", "device_id", "code"), [
    ("tablet", WEB_ID, "device-mismatch"),  # a tablet cannot send a batch under the web service's id
    ("web", TABLET_ID, "device-mismatch"),  # the web service cannot send a tablet's batch
])
async def test_web_ids_and_tablet_ids_do_not_mix(env: Env, gw: Gateway, sender: str, device_id: str,
                                                code: str) -> None:
    bundle = env.web_bundle() if sender == "web" else env.tablet_bundle()
    envelope = _seal(bundle, device_id, 1)
    async with SignedGatewayClient(gw.url, bundle.signing_key, ssl_context=None) as client:
        with pytest.raises(GatewayRefused) as e:
            await client.post_batch(envelope)
    assert e.value.problem_code == code
    assert gw.rows("SELECT count(*) FROM batches") == [(0,)]


@pytest.mark.parametrize(("value", "date", "expected"), [
    ("120", None, 120.0),
    ("  7 ", None, 7.0),
    ("999999999", None, 86400.0),
    ("Wed, 21 Oct 2015 07:28:30 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("-5", None, None),
    ("soon", None, None),
    (None, None, None),
])
def test_retry_after_both_forms(value: str | None, date: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, date, now_s=0.0) == expected
