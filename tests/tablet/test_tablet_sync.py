"""The sync engine against the real gateway on loopback: delivery, proof, the USB road, refusals."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nacl.signing import SigningKey

from tablet.generator import generate_sheets
from tablet.outbox import Outbox
from tablet.sync_report import SyncReport
from tests.gateway.harness import World, now_ms, post_batch, seed
from wire import make_receipt, parse_receipt

from .test_tablet_sync_bed import GatewayBed, Mitm, engine_for, fill_and_pack, world_identity

DEVICE = "TAB-0001"


@pytest.fixture
def world() -> World:
    return World.make(n_tablets=2, n_stations=1)


@pytest.fixture
async def bed(world: World, tmp_path: Path) -> AsyncIterator[GatewayBed]:
    gateway = await GatewayBed.of_world(world, tmp_path / "census.db").start()
    yield gateway
    await gateway.stop()


def security_events(bed: GatewayBed) -> list[str]:
    with contextlib.closing(sqlite3.connect(bed.db_path)) as db:
        return [k for (k,) in db.execute("SELECT kind FROM security_events")]


def outbox_state(path: Path) -> tuple[list[int], dict[int, bytes | None]]:
    """(seqs still open, stored receipt per seq) of the tablet's outbox."""
    with Outbox.open(path, device_id=DEVICE, now_ms=now_ms()) as ob:
        seqs = [b.seq for b in ob.pending_batches()]
        receipts = {s: ob.receipt(s) for s in range(1, ob.stats().next_seq)}
    return seqs, receipts


async def station_delivers(world: World, bed: GatewayBed, outbox_path: Path, seqs: set[int]) -> None:
    """The USB road: a station carries these batches of the tablet's outbox to the gateway."""
    with Outbox.open(outbox_path, device_id=DEVICE, now_ms=now_ms()) as ob:
        envelopes = [b.envelope for b in ob.pending_batches() if b.seq in seqs]
    async with aiohttp.ClientSession() as session:
        for envelope in envelopes:
            status, answer = await post_batch(session, bed, envelope, world.stations["ST-01"])  # type: ignore[arg-type]
            assert status == 200 and answer["road"] == "station:ST-01"


async def test_round_trip_receipts_verified_and_stored_once(world: World, bed: GatewayBed, tmp_path: Path) -> None:
    ident = world_identity(world)
    path = tmp_path / "outbox.db"
    fill_and_pack(path, ident, 23, pack=False)
    received = []
    async with engine_for(ident, path, bed.url, pack=True) as engine:
        engine._on_receipt = lambda r, dup: received.append((r.seq, dup))
        report = await engine.sync_once()
    assert (report.outcome, report.exit_code, report.packed, report.stored, report.duplicates) == (
        "complete", 0, 5, 5, 0)
    assert report.sheets_receipted == 23 and report.sheets_quarantined == 0
    assert report.state is not None and (report.state.highest_contiguous, report.state.gaps) == (5, ())
    assert received == [(s, False) for s in range(1, 6)]
    pending, receipts = outbox_state(path)
    stored = bed.stored(DEVICE)
    assert pending == [] and sorted(stored) == [(DEVICE, s) for s in range(1, 6)]
    assert all(receipts[s] == stored[(DEVICE, s)][1] for s in range(1, 6))  # the tablet keeps the gateway's receipt

    async with engine_for(ident, path, bed.url) as engine:  # nothing left: a second pass only reads the state
        again = await engine.sync_once()
    assert (again.outcome, again.receipts_verified, again.covered) == ("complete", 0, 0)
    assert len(bed.stored(DEVICE)) == 5


def _foreign_key(index: int, body: bytes) -> bytes:
    answer = json.loads(body)
    genuine = _decode_unverified(answer["receipt"])
    forged = make_receipt(gateway_key=SigningKey(seed("attacker")), **genuine)
    return json.dumps(answer | {"receipt": base64.b64encode(forged).decode()}).encode()


def _decode_unverified(b64: str) -> dict:
    """The attacker reads the genuine receipt (public key and all) and re-signs its fields."""
    r = parse_receipt(base64.b64decode(b64), World().gateway_keys)
    return {"batch_hash": r.batch_hash, "device_id": r.device_id, "seq": r.seq, "received_at_ms": r.received_at_ms,
            "road": r.road, "sheets_accepted": r.sheets_accepted, "sheets_quarantined": r.sheets_quarantined}


def _flipped_signature(index: int, body: bytes) -> bytes:
    answer = json.loads(body)
    raw = bytearray(base64.b64decode(answer["receipt"]))
    raw[-1] ^= 0x01
    return json.dumps(answer | {"receipt": base64.b64encode(bytes(raw)).decode()}).encode()


class _Replayed:
    """Answers every batch after the first with the first batch's (genuine, valid) receipt."""

    def __init__(self) -> None:
        self.first: bytes | None = None

    def __call__(self, index: int, body: bytes) -> bytes:
        if self.first is None:
            self.first = body
        return self.first


REFUSED_RECEIPTS = [
    pytest.param(_foreign_key, "receipt-refused", 1, id="signed-by-another-key"),
    pytest.param(_flipped_signature, "receipt-refused", 1, id="signature-altered"),
    pytest.param(_Replayed, "receipt-mismatch", 2, id="receipt-of-another-batch"),
    pytest.param(lambda i, b: b'{"duplicate": false}', "bad-answer", 1, id="no-receipt"),
    pytest.param(lambda i, b: b"[1, 2]", "bad-answer", 1, id="not-an-object"),
]


@pytest.mark.parametrize(("rewrite", "code", "stop_seq"), REFUSED_RECEIPTS)
async def test_no_batch_closed_without_a_verified_matching_receipt(
    world: World, bed: GatewayBed, tmp_path: Path, rewrite, code: str, stop_seq: int
) -> None:
    ident = world_identity(world)
    path = tmp_path / "outbox.db"
    fill_and_pack(path, ident, 15)  # seqs 1..3
    mitm = Mitm(bed.url, rewrite() if isinstance(rewrite, type) else rewrite)
    url = await mitm.start()
    try:
        async with engine_for(ident, path, url) as engine:
            report = await engine.sync_once()
    finally:
        await mitm.stop()
    assert (report.outcome, report.exit_code) == ("stopped", 3)
    assert report.stop is not None and (report.stop.code, report.stop.seq) == (code, stop_seq)
    assert report.stop.hint
    pending, _ = outbox_state(path)
    assert pending == list(range(stop_seq, 4))  # the batch the gateway did store is still held by the tablet
    assert (DEVICE, stop_seq) in bed.stored(DEVICE)

    async with engine_for(ident, path, bed.url) as engine:  # straight to the gateway: proof from the real one
        healed = await engine.sync_once()
    # before any receipt only a duplicate receipt may close the stored batch; after one, the sync state may
    assert (healed.outcome, healed.duplicates + healed.covered) == ("complete", 1)
    assert outbox_state(path)[0] == []


async def test_untrusted_gateway_key_deletes_nothing(world: World, tmp_path: Path) -> None:
    """A gateway whose receipt key is not the census one the tablet was provisioned with."""
    rogue = await GatewayBed.of_world(world, tmp_path / "rogue.db", receipt_key=SigningKey(seed("rogue"))).start()
    try:
        ident = world_identity(world)
        path = tmp_path / "outbox.db"
        fill_and_pack(path, ident, 10)
        async with engine_for(ident, path, rogue.url) as engine:
            report = await engine.sync_once()
    finally:
        await rogue.stop()
    assert report.stop is not None and report.stop.code == "state-refused"  # even its sync state is refused
    assert outbox_state(path)[0] == [1, 2]


async def test_gap_left_by_the_usb_road_is_filled_and_the_rest_covered(
    world: World, bed: GatewayBed, tmp_path: Path
) -> None:
    ident = world_identity(world)
    path = tmp_path / "outbox.db"
    fill_and_pack(path, ident, 15)  # seqs 1..3, exported to USB; the station delivered 1 and 3 only
    await station_delivers(world, bed, path, {1, 3})
    async with engine_for(ident, path, bed.url) as engine:
        report = await engine.sync_once()
    # seq 1: first proof (a duplicate receipt anchors the seq line); seq 2: resent into the gap;
    # seq 3: already at the gateway, closed by the next signed sync state without upload
    assert (report.outcome, report.duplicates, report.stored, report.gap_fills, report.covered) == (
        "complete", 1, 1, 1, 1)
    assert report.state is not None and (report.state.highest_contiguous, report.state.gaps) == (3, ())
    stored = bed.stored(DEVICE)
    assert sorted(stored) == [(DEVICE, 1), (DEVICE, 2), (DEVICE, 3)]
    _, receipts = outbox_state(path)
    assert receipts[3] is None and receipts[1] is not None  # 3 was closed by the state, not by a receipt
    assert parse_receipt(receipts[1], world.gateway_keys).road == "station:ST-01"


async def test_batches_delivered_by_usb_are_covered_without_upload(
    world: World, bed: GatewayBed, tmp_path: Path
) -> None:
    ident = world_identity(world)
    path = tmp_path / "outbox.db"
    fill_and_pack(path, ident, 5)
    async with engine_for(ident, path, bed.url) as engine:
        assert (await engine.sync_once()).stored == 1
    fill_and_pack(path, ident, 10, start=5)  # seqs 2, 3 go by USB
    await station_delivers(world, bed, path, {2, 3})
    async with engine_for(ident, path, bed.url) as engine:
        report = await engine.sync_once()
    assert (report.outcome, report.covered, report.receipts_verified) == ("complete", 2, 0)
    assert outbox_state(path)[0] == []


async def test_reprovisioned_tablet_continues_after_the_gateways_seqs(
    world: World, bed: GatewayBed, tmp_path: Path
) -> None:
    """An earlier outbox of this device delivered 1..3 and was lost; the new one must not reuse them."""
    ident = world_identity(world)
    old = tmp_path / "old.db"
    fill_and_pack(old, ident, 15, seed=99)
    async with engine_for(ident, old, bed.url) as engine:
        assert (await engine.sync_once()).stored == 3
    path = tmp_path / "outbox.db"
    fill_and_pack(path, ident, 4, pack=False)  # sheets waiting; not sealed yet
    async with engine_for(ident, path, bed.url, pack=True) as engine:
        report = await engine.sync_once()
    assert (report.outcome, report.seq_advanced_to, report.packed, report.stored) == ("complete", 4, 1, 1)
    assert sorted(bed.stored(DEVICE)) == [(DEVICE, s) for s in (1, 2, 3, 4)]
    assert security_events(bed) == []


async def _conflicting_seq_1(world: World, bed: GatewayBed) -> None:
    async with aiohttp.ClientSession() as session:
        body = world.batch(DEVICE, 1, generate_sheets(42, 2, device_id=DEVICE))
        status, _ = await post_batch(session, bed, body, world.tablets[DEVICE])  # type: ignore[arg-type]
        assert status == 200


HUMAN_STOPS = ["revoked", "unknown-key", "conflict"]


@pytest.mark.parametrize("code", HUMAN_STOPS)
async def test_refusals_that_need_a_person_stop_the_pass(world: World, tmp_path: Path, code: str) -> None:
    ident = world_identity(world)
    if code == "revoked":
        world.status[DEVICE] = "revoked"
    if code == "unknown-key":
        ident = world_identity(world, key=SigningKey(seed("not-enrolled")))
    bed = await GatewayBed.of_world(world, tmp_path / "census.db").start()
    try:
        if code == "conflict":
            await _conflicting_seq_1(world, bed)
        path = tmp_path / "outbox.db"
        fill_and_pack(path, ident, 10)
        async with engine_for(ident, path, bed.url) as engine:
            report: SyncReport = await engine.sync_once()
    finally:
        await bed.stop()
    assert (report.outcome, report.exit_code, report.retries) == ("stopped", 3, 0)
    assert report.stop is not None and report.stop.code == code
    assert dict(report.refusals) == {code: 1}
    assert "STOPPED" in report.describe() and "needs a person" in report.describe()
    assert outbox_state(path)[0] == [1, 2]  # a seq conflict is never "covered" by the gateway's state
