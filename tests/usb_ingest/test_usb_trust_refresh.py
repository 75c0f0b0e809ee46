"""A tablet newer than the station's cached registry: refresh first, then tell "unknown to the authority"
apart from "my registry is old and I could not ask" (a false security alarm before)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from keys.enrollment import enroll_tablet
from usb_ingest.station import Station

from .images import Env, export, now_ms, serial_of, serve_gateway

pytestmark = pytest.mark.usefixtures("_logs_unfiltered")


class Clock:
    def __init__(self) -> None:
        self.ms = now_ms()

    def __call__(self) -> int:
        return self.ms


async def _push(url: str, snapshot: bytes) -> None:
    async with aiohttp.ClientSession() as s, s.put(f"{url}/v1/registry", data=snapshot,
                                                   headers={"Content-Type": "application/vnd.sanaq.snapshot"}) as r:
        assert r.status == 200, await r.text()


@pytest.mark.parametrize("case", ["newly enrolled", "unknown to the authority", "gateway unreachable"])
async def test_unknown_tablet_is_judged_on_a_fresh_registry(env: Env, tmp_path: Path, case: str) -> None:
    gw = await serve_gateway(env, tmp_path / "census.db")
    clock = Clock()
    station = Station.open(env.config(gw.url), clock=clock)
    stopped = False
    try:
        async with station.client() as client:
            await station.trust.refresh(client)  # what the daemon's refresh loop and `pull` do first
            held = station.trust.snapshot.version if station.trust.snapshot else 0
            device = "TAB-0099"
            key = None
            if case == "unknown to the authority":
                device, key = "TAB-0666", SigningKey.generate()
            else:
                env.tablets[device] = enroll_tablet(
                    env.authority, tmp_path / "bundle-new", device_id=device, usb_serial=serial_of(device),
                    institution="HOSP-01", worker_id="W-9", gateway_url="https://localhost:8443", now_ms=now_ms())
                await _push(gw.url, env.publish())
            if case == "gateway unreachable":
                await gw.stop()
                stopped = True
            image = tmp_path / "tab.img"
            export(env, image, device, range(1, 3), key=key)
            clock.ms += 60_000  # the last refresh is a minute old: the station asks again before judging
            with capture_logs() as logs:
                report = await asyncio.to_thread(station.pull_volume, str(image))
        alarms = [e for e in logs if e["event"] == "usb.security.event"]
        codes = [p.code for p in report.problems]
        version = station.trust.snapshot.version if station.trust.snapshot else 0
        if case == "newly enrolled":
            assert report.outcome == "complete" and not alarms, codes
            assert version > held
            assert any(e["event"] == "usb.trust.device_found_after_refresh" for e in logs)
        elif case == "unknown to the authority":
            assert (report.outcome, codes) == ("refused", ["unknown-tablet"])
            assert [a["code"] for a in alarms] == ["unknown-tablet"]
        else:
            assert (report.outcome, codes) == ("refused", ["registry-stale"])
            assert not alarms
            refused = [e for e in logs if e["event"] == "usb.volume.refused"]
            assert refused and refused[0]["code"] == "registry-stale" and refused[0]["log_level"] == "warning"
            assert version == held
    finally:
        station.close()
        if not stopped:
            await gw.stop()
