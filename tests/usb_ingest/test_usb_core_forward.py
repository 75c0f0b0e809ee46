"""Forwarding to a real gateway on loopback: receipts, exactly-once, outages, refusals, clock skew, TLS pinning."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from keys import make_ca
from keys.tls import save_cert
from usb_ingest.forwarder import Forwarder
from usb_ingest.gateway_client import GatewayClient
from usb_ingest.station import Station

from ..gateway.harness import post_batch
from .images import (
    DAY_MS,
    Env,
    Gateway,
    export,
    free_port,
    now_ms,
    seal,
    serve_gateway,
)

SEQS = range(1, 5)

pytestmark = pytest.mark.usefixtures("_logs_unfiltered")


def open_station(env: Env, url: str, **changes: object) -> Station:
    return Station.open(dataclasses.replace(env.config(url), **changes))


async def pull_and_forward(station: Station, image: Path, wait_s: float = 10.0) -> tuple[object, bool]:
    report = await asyncio.to_thread(station.pull_volume, str(image))
    async with station.client() as client:
        delivered = await Forwarder(station.spool, client, station.trust, station.config.forward).drain(wait_s)
    return report, delivered


async def test_a_pull_reaches_the_gateway_exactly_once(env: Env, gw: Gateway, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    station = open_station(env, gw.url)
    try:
        with capture_logs() as logs:
            _report, delivered = await pull_and_forward(station, image)
        assert delivered is True
        assert gw.rows("SELECT seq, road FROM batches ORDER BY seq") == [(s, "station:ST-01") for s in SEQS]
        assert gw.rows("SELECT station_id, device_id, batch_count FROM custody") == [("ST-01", "TAB-0001", 4)]
        assert station.spool.pending_batches() == [] and station.spool.pending_custody() == []
        assert len(station.spool.receipt_log.read_text().splitlines()) == 4
        assert [e["event"] for e in logs].count("usb.forward.delivered") == 4

        again, delivered = await pull_and_forward(station, image)  # the tablet is plugged in again
        assert again.already_delivered == (1, 2, 3, 4)  # type: ignore[attr-defined]
        assert again.spooled == () and not again.custody_spooled  # type: ignore[attr-defined]
        assert delivered is True
        assert gw.rows("SELECT count(*) FROM batches") == [(4,)]
        assert gw.rows("SELECT count(*) FROM custody") == [(1,)]
        station.refresh_status()
        assert (station.board.view.delivered, station.board.view.spool_pending) == (4, 0)
    finally:
        station.close()


async def test_tls_is_pinned_to_the_census_ca(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    gw = await serve_gateway(env, tmp_path / "census.db", tls=True)
    try:
        assert gw.url.startswith("https://")
        _, other_ca = make_ca(now_ms=now_ms(), common_name="Someone Else CA")
        save_cert(tmp_path / "other-ca.crt", other_ca)
        station = open_station(env, gw.url, ca_cert=tmp_path / "other-ca.crt")
        try:
            _, delivered = await pull_and_forward(station, image, wait_s=0.3)
            assert delivered is False  # the gateway's certificate is not from the pinned CA
            assert len(station.spool.pending_batches()) == 4
        finally:
            station.close()
        station = open_station(env, gw.url)  # the bundle's census CA
        try:
            async with station.client() as client:
                assert await Forwarder(station.spool, client, station.trust, station.config.forward).drain(10)
        finally:
            station.close()
        assert gw.rows("SELECT count(*) FROM batches") == [(4,)]
    finally:
        await gw.stop()


async def test_the_spool_keeps_everything_through_a_gateway_outage(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    port = free_port()
    station = open_station(env, f"http://127.0.0.1:{port}")
    try:
        report, delivered = await pull_and_forward(station, image, wait_s=0.5)
        assert report.outcome == "complete" and delivered is False  # type: ignore[attr-defined]
        assert len(station.spool.pending_batches()) == 4
        assert len(station.spool.pending_custody()) == 1
        async with station.client() as client:
            forwarder = Forwarder(station.spool, client, station.trust, station.config.forward)
            result = await forwarder.forward_round()
            assert (result.kind, result.delivered) == ("transient", 0)
            gw = await serve_gateway(env, tmp_path / "census.db", port=port)  # the gateway comes back
            try:
                assert await forwarder.drain(10) is True
                assert gw.rows("SELECT count(*) FROM batches") == [(4,)]
                assert gw.rows("SELECT count(*) FROM custody") == [(1,)]
            finally:
                await gw.stop()
    finally:
        station.close()


async def test_a_batch_the_gateway_refuses_for_good_is_moved_aside(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0002", SEQS)
    station = open_station(env, "http://127.0.0.1:9")
    await asyncio.to_thread(station.pull_volume, str(image))
    station.close()
    env.authority.registry.revoke("TAB-0002", reason="stolen after the pull", now_ms=now_ms())
    gw = await serve_gateway(env, tmp_path / "census.db", snapshot=env.publish())
    station = open_station(env, gw.url)
    try:
        async with station.client() as client:
            assert await Forwarder(station.spool, client, station.trust, station.config.forward).drain(10)
        moved = sorted(station.spool.rejected_dir.glob("*.sqb"))
        assert [p.name.split(".")[1] for p in moved] == [f"{s:016d}" for s in SEQS]
        reason = json.loads(moved[0].with_name(f"{moved[0].name}.reason.json").read_bytes())
        assert (reason["code"], reason["status"], reason["seq"]) == ("revoked", 403, 1)
        assert station.spool.pending_batches() == []
        assert gw.rows("SELECT count(*) FROM batches") == [(0,)]
    finally:
        station.close()
        await gw.stop()


async def test_a_seq_conflict_at_the_gateway_is_a_security_event(env: Env, gw: Gateway, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    async with aiohttp.ClientSession() as session:  # the tablet sent other bytes as seq 1 online
        status, _ = await post_batch(session, gw, seal(env, "TAB-0001", 1), env.tablet_key("TAB-0001"))  # type: ignore[arg-type]
        assert status == 200
    station = open_station(env, gw.url)
    try:
        with capture_logs() as logs:
            _, delivered = await pull_and_forward(station, image)
        assert delivered is True
        assert len([p for p in station.spool.rejected_dir.iterdir() if p.suffix == ".sqb"]) == 1
        assert any(e["event"] == "usb.security.event" and e["code"] == "conflict" for e in logs)
        assert gw.rows("SELECT seq, road FROM batches ORDER BY seq") == [
            (1, "online"), (2, "station:ST-01"), (3, "station:ST-01"), (4, "station:ST-01")]
    finally:
        station.close()


async def test_a_refused_station_keeps_its_spool(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    env.authority.registry.revoke("ST-01", reason="machine stolen", now_ms=now_ms())
    gw = await serve_gateway(env, tmp_path / "census.db", snapshot=env.publish())
    station = open_station(env, gw.url)
    try:
        with capture_logs() as logs:
            _, delivered = await pull_and_forward(station, image, wait_s=0.3)
        assert delivered is False
        assert len(station.spool.pending_batches()) == 4
        assert list(station.spool.rejected_dir.iterdir()) == []
        assert any(e["event"] == "usb.forward.station_refused" for e in logs)
    finally:
        station.close()
        await gw.stop()


async def test_a_wrong_station_clock_is_corrected_from_the_gateway(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    gw = await serve_gateway(env, tmp_path / "census.db", clock=lambda: now_ms() + 600_000)
    station = open_station(env, gw.url)
    try:
        await asyncio.to_thread(station.pull_volume, str(image))
        async with station.client() as client:
            assert await Forwarder(station.spool, client, station.trust, station.config.forward).drain(10)
            assert 590_000 < client.clock_offset_ms < 610_000
        assert gw.rows("SELECT count(*) FROM batches") == [(4,)]
    finally:
        station.close()
        await gw.stop()


async def test_503_with_retry_after_is_waited_out(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    gw = await serve_gateway(env, tmp_path / "census.db", clock=lambda: now_ms() + 30 * DAY_MS)  # its registry expired
    station = open_station(env, gw.url)
    try:
        await asyncio.to_thread(station.pull_volume, str(image))
        async with station.client() as client:
            result = await Forwarder(station.spool, client, station.trust, station.config.forward).forward_round()
        assert (result.kind, result.retry_after_s) == ("transient", 5.0)  # the gateway's Retry-After
        assert len(station.spool.pending_batches()) == 4
    finally:
        station.close()
        await gw.stop()


async def test_a_receipt_that_does_not_verify_keeps_the_entry(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    gw = await serve_gateway(env, tmp_path / "census.db", receipt_key=SigningKey.generate())
    station = open_station(env, gw.url)
    try:
        with capture_logs() as logs:
            _, delivered = await pull_and_forward(station, image, wait_s=0.3)
        assert delivered is False
        assert len(station.spool.pending_batches()) == 4
        assert any(e["event"] == "usb.forward.bad_receipt" for e in logs)
    finally:
        station.close()
        await gw.stop()


async def test_an_expired_registry_is_refreshed_from_the_gateway(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    later = now_ms() + 10 * DAY_MS  # the bundle's snapshot is valid for 7 days
    fresh = env.publish(now=later - DAY_MS, validity_ms=30 * DAY_MS)
    gw = await serve_gateway(env, tmp_path / "census.db", snapshot=fresh, clock=lambda: now_ms() + 10 * DAY_MS)
    station = open_station(env, gw.url)
    station.trust.clock = lambda: now_ms() + 10 * DAY_MS
    try:
        refused = await asyncio.to_thread(station.pull_volume, str(image))
        assert refused.outcome == "refused" and refused.problems[0].code == "trust-expired"
        async with GatewayClient(gw.url, station.bundle.signing_key, ssl_context=None) as client:
            client.clock_offset_ms = 10 * DAY_MS
            assert await station.trust.refresh(client) is True
        assert station.trust.state().version == station.trust.current().version > 5
        report = await asyncio.to_thread(station.pull_volume, str(image))
        assert report.outcome == "complete"
    finally:
        station.close()
        await gw.stop()


async def test_a_tablet_the_gateway_does_not_know_yet_is_retried_not_rejected(env: Env, tmp_path: Path) -> None:
    from keys import enroll_tablet

    old = env.authority.latest_snapshot()
    assert old is not None
    new_tablet = enroll_tablet(env.authority, env.root / "bundle-TAB-0004", device_id="TAB-0004",
                               usb_serial="SER-TAB-0004", institution="HOSP-01", worker_id="W-18",
                               gateway_url="https://localhost:8443", now_ms=now_ms())
    env.tablets["TAB-0004"] = new_tablet
    gw = await serve_gateway(env, tmp_path / "census.db", snapshot=old)  # the gateway lags one version
    station = open_station(env, gw.url)
    try:
        station.trust.accept(new_tablet.snapshot)
        for device_id in ("TAB-0004", "TAB-0001"):
            export(env, tmp_path / f"{device_id}.img", device_id, range(1, 3))
            await asyncio.to_thread(station.pull_volume, str(tmp_path / f"{device_id}.img"))
        async with station.client() as client:
            forwarder = Forwarder(station.spool, client, station.trust, station.config.forward)
            with capture_logs() as logs:
                assert await forwarder.drain(0.3) is False
            assert any(e["event"] == "usb.forward.deferred" and e["code"] == "unknown-key" for e in logs)
            assert [e.device_id for e in station.spool.pending_batches()] == ["TAB-0004", "TAB-0004"]
            assert list(station.spool.rejected_dir.iterdir()) == []
            async with aiohttp.ClientSession() as session:  # the gateway gets the new registry
                resp = await session.put(f"{gw.url}/v1/registry", data=new_tablet.snapshot,
                                         headers={"Content-Type": "application/vnd.sanaq.snapshot"})
                assert resp.status == 200, await resp.text()
            assert await forwarder.drain(10) is True
        assert gw.rows("SELECT device_id, count(*) FROM batches GROUP BY device_id") == [
            ("TAB-0001", 2), ("TAB-0004", 2)]
    finally:
        station.close()
        await gw.stop()
