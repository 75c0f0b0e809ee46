"""Sync under faults, each made real on loopback: a store that is gone, a gateway that is down,
a tablet clock an hour off, a receipt lost on the way back."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import LimitsConfig
from tablet.outbox import Outbox
from tablet.sync_policy import RetryPolicy
from tests.gateway.harness import World, now_ms

from .test_tablet_sync_bed import GatewayBed, LossyProxy, Sleeps, engine_for, fill_and_pack, world_identity

DEVICE = "TAB-0001"


@pytest.fixture
def world() -> World:
    return World.make(n_tablets=1, n_stations=0)


def held(path: Path) -> dict[int, bytes]:
    """seq -> envelope of every batch still open in the outbox."""
    with Outbox.open(path, device_id=DEVICE, now_ms=now_ms()) as ob:
        return {b.seq: b.envelope for b in ob.pending_batches()}


async def test_store_unavailable_backs_off_per_retry_after_then_completes(world: World, tmp_path: Path) -> None:
    bed = await GatewayBed.of_world(world, tmp_path / "census.db").start()
    path = tmp_path / "outbox.db"
    fill_and_pack(path, world_identity(world), 10)
    await bed.ctx.store.close()  # the database is gone: every request is 503 unavailable + Retry-After: 5

    async def gateway_back(n: int) -> None:
        await bed.stop()
        await bed.start()  # same port, same database file

    sleeps = Sleeps(gateway_back)
    try:
        async with engine_for(world_identity(world), path, bed.url, sleep=sleeps) as engine:
            report = await engine.sync_once()
        assert (report.outcome, report.stored, report.retries) == ("complete", 2, 1)
        assert dict(report.refusals) == {"unavailable": 1}
        assert len(sleeps.delays) == 1 and 5.0 <= sleeps.delays[0] <= 5.0 + 0.5  # Retry-After + jitter of try 1
        assert held(path) == {} and len(bed.stored(DEVICE)) == 2
    finally:
        await bed.stop()


async def test_too_many_requests_honours_retry_after_within_the_budget(world: World, tmp_path: Path) -> None:
    """A gateway that admits no batch of this device at the moment (429 + Retry-After: 2), then relents."""
    bed = GatewayBed.of_world(world, tmp_path / "census.db")
    bed.limits = LimitsConfig(max_inflight_per_device=0, retry_after_s=2)
    await bed.start()
    path = tmp_path / "outbox.db"
    fill_and_pack(path, world_identity(world), 5)

    async def relent(n: int) -> None:
        if n == 2:  # after the second refusal the operator restarts it with the normal limit
            await bed.stop()
            bed.limits = LimitsConfig()
            await bed.start()

    sleeps = Sleeps(relent)
    try:
        async with engine_for(world_identity(world), path, bed.url, sleep=sleeps, max_attempts=3) as engine:
            report = await engine.sync_once()
    finally:
        await bed.stop()
    assert (report.outcome, report.stored, report.retries) == ("complete", 1, 2)
    assert dict(report.refusals) == {"too-many-requests": 2}
    assert [2.0 <= d <= 2.0 + RetryPolicy(base_s=0.5, cap_s=4.0).ceiling(n) for n, d in
            enumerate(sleeps.delays, start=1)] == [True, True]
    assert held(path) == {}


async def test_gateway_down_retries_are_bounded_and_nothing_is_deleted(world: World, tmp_path: Path) -> None:
    bed = await GatewayBed.of_world(world, tmp_path / "census.db").start()
    await bed.stop()  # the port is known and now refuses connections
    path = tmp_path / "outbox.db"
    fill_and_pack(path, world_identity(world), 10, pack=False)
    sleeps = Sleeps()
    async with engine_for(world_identity(world), path, bed.url, sleep=sleeps, max_attempts=4, pack=True) as engine:
        report = await engine.sync_once()
    assert (report.outcome, report.exit_code, report.retries, report.receipts_verified) == ("incomplete", 1, 3, 0)
    assert report.packed == 2 and sorted(held(path)) == [1, 2]  # sealed offline, kept, ready for a USB export
    assert report.refusals == ()  # no answer at all, not a refusal
    policy = RetryPolicy(max_attempts=4, base_s=0.5, cap_s=4.0)
    assert len(sleeps.delays) == 3
    assert all(0 <= d <= policy.ceiling(n) for n, d in enumerate(sleeps.delays, start=1))  # full jitter, doubling

    await bed.start()
    try:
        async with engine_for(world_identity(world), path, bed.url) as engine:
            later = await engine.sync_once()
        assert (later.outcome, later.stored) == ("complete", 2)
        assert held(path) == {} and len(bed.stored(DEVICE)) == 2
    finally:
        await bed.stop()


async def test_tablet_clock_an_hour_ahead_is_corrected_from_the_problem(world: World, tmp_path: Path) -> None:
    bed = await GatewayBed.of_world(world, tmp_path / "census.db").start()
    path = tmp_path / "outbox.db"
    fill_and_pack(path, world_identity(world), 10)
    try:
        async with engine_for(world_identity(world), path, bed.url,
                              clock=lambda: now_ms() + 3_600_000) as engine:
            report = await engine.sync_once()
            again = await engine.sync_once()  # the offset is kept: no second correction
    finally:
        await bed.stop()
    assert (report.outcome, report.clock_corrections, report.stored, report.retries) == ("complete", 1, 2, 0)
    assert dict(report.refusals) == {"clock-skew": 1}
    assert abs(report.clock_offset_ms + 3_600_000) < 5_000
    assert (again.clock_corrections, again.refusals) == (0, ())
    assert len(bed.stored(DEVICE)) == 2


async def test_receipt_lost_on_the_way_back_resend_gets_the_stored_receipt(world: World, tmp_path: Path) -> None:
    bed = await GatewayBed.of_world(world, tmp_path / "census.db").start()
    proxy = LossyProxy(bed.port, drop_answers=1)
    url = await proxy.start()
    path = tmp_path / "outbox.db"
    fill_and_pack(path, world_identity(world), 10)
    sleeps = Sleeps()
    try:
        async with engine_for(world_identity(world), path, url, sleep=sleeps) as engine:
            report = await engine.sync_once()
    finally:
        await proxy.stop()
        await bed.stop()
    assert proxy.dropped == 1
    assert (report.outcome, report.retries, len(sleeps.delays)) == ("complete", 1, 1)
    assert (report.stored, report.duplicates) == (1, 1)  # seq 1 committed unseen, then answered as a duplicate
    stored = bed.stored(DEVICE)
    assert sorted(stored) == [(DEVICE, 1), (DEVICE, 2)]  # exactly one copy each
    with Outbox.open(path, device_id=DEVICE, now_ms=now_ms()) as ob:
        assert ob.pending_batches() == []
        assert ob.receipt(1) == stored[(DEVICE, 1)][1]  # the receipt of the first, unseen arrival
