"""POST /v1/batches against a real gateway on loopback with a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from wire import decode_envelope, parse_receipt

from .harness import Gateway, World, post_batch, receipt_bytes, start_gateway


def db_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_round_trip_receipt_verifies_and_batch_is_stored(world: World, gw: Gateway, session, sheets) -> None:
    envelope = world.batch("TAB-0001", 1, sheets(3))
    status, answer = await post_batch(session, gw, envelope, world.tablets["TAB-0001"])
    assert status == 200, answer
    receipt = parse_receipt(receipt_bytes(answer), world.gateway_keys)
    assert receipt.batch_hash == decode_envelope(envelope).batch_hash
    assert (receipt.device_id, receipt.seq, receipt.road) == ("TAB-0001", 1, "online")
    assert receipt.sheets_accepted == 3 and receipt.sheets_quarantined == 0
    assert answer["duplicate"] is False
    stored = db_rows(gw.db_path, "SELECT device_id, seq, envelope, receipt FROM batches")
    assert stored == [("TAB-0001", 1, envelope, receipt.raw)]
    assert db_rows(gw.db_path, "SELECT count(*) FROM sheets") == [(3,)]


async def test_resend_gets_same_receipt_and_one_copy(world: World, gw: Gateway, session, sheets) -> None:
    envelope = world.batch("TAB-0001", 1, sheets(2))
    key = world.tablets["TAB-0001"]
    _, first = await post_batch(session, gw, envelope, key)
    status, again = await post_batch(session, gw, envelope, key)
    assert status == 200
    assert again["duplicate"] is True
    assert receipt_bytes(again) == receipt_bytes(first)
    assert db_rows(gw.db_path, "SELECT count(*) FROM batches") == [(1,)]
    assert db_rows(gw.db_path, "SELECT count(*) FROM sheets") == [(2,)]


async def test_station_resend_of_online_batch_is_one_idempotency_domain(
    world: World, gw: Gateway, session, sheets
) -> None:
    envelope = world.batch("TAB-0002", 1, sheets(1, device_id="TAB-0002"))
    _, first = await post_batch(session, gw, envelope, world.tablets["TAB-0002"])
    status, via_station = await post_batch(session, gw, envelope, world.stations["ST-01"])
    assert status == 200 and via_station["duplicate"] is True
    assert receipt_bytes(via_station) == receipt_bytes(first)
    assert via_station["road"] == "online"
    assert db_rows(gw.db_path, "SELECT count(*) FROM batches") == [(1,)]


async def test_station_carries_a_tablet_batch_with_station_road(world: World, gw: Gateway, session, sheets) -> None:
    envelope = world.batch("TAB-0003", 1, sheets(1, device_id="TAB-0003"))
    status, answer = await post_batch(session, gw, envelope, world.stations["ST-01"])
    assert status == 200, answer
    assert parse_receipt(receipt_bytes(answer), world.gateway_keys).road == "station:ST-01"


async def test_conflict_is_refused_recorded_and_changes_nothing(world: World, gw: Gateway, session, sheets) -> None:
    key = world.tablets["TAB-0001"]
    original = world.batch("TAB-0001", 1, sheets(2, seed=1))
    await post_batch(session, gw, original, key)
    other = world.batch("TAB-0001", 1, sheets(2, seed=2))
    status, problem = await post_batch(session, gw, other, key)
    assert status == 409 and problem["code"] == "conflict"
    assert db_rows(gw.db_path, "SELECT envelope FROM batches") == [(original,)]
    assert db_rows(gw.db_path, "SELECT kind, device_id, seq FROM security_events") == [("seq-conflict", "TAB-0001", 1)]


async def test_invalid_sheets_are_quarantined_with_reason(world: World, gw: Gateway, session, sheets) -> None:
    good = sheets(2)
    bad = dict(good[1])
    bad["persons"] = "not a list"
    envelope = world.batch("TAB-0001", 1, [good[0], bad, ["not", "an", "object"]])
    status, answer = await post_batch(session, gw, envelope, world.tablets["TAB-0001"])
    assert status == 200, answer
    receipt = parse_receipt(receipt_bytes(answer), world.gateway_keys)
    assert (receipt.sheets_accepted, receipt.sheets_quarantined) == (1, 2)
    rows = db_rows(gw.db_path, "SELECT idx, reason FROM quarantine ORDER BY idx")
    assert [r[0] for r in rows] == [1, 2]
    assert rows[0][1] == "S-20 /persons"  # rule id and JSON pointer (docs/census-sheet.md), no value
    assert rows[1][1] == "S-1"


async def test_replayed_request_is_refused_even_after_restart(world: World, tmp_path: Path, session, sheets) -> None:
    db = tmp_path / "census.db"
    snapshot = world.snapshot()
    gw = await start_gateway(world, db, snapshot=snapshot)
    envelope = world.batch("TAB-0001", 1, sheets(1))
    key = world.tablets["TAB-0001"]
    nonce = "replay-nonce-0123456789"
    status, _ = await post_batch(session, gw, envelope, key, nonce=nonce, created=None)
    assert status == 200
    status, problem = await post_batch(session, gw, envelope, key, nonce=nonce)
    assert (status, problem["code"]) == (401, "replay")
    await gw.stop()
    gw2 = await start_gateway(world, db, snapshot=snapshot)
    try:
        status, problem = await post_batch(session, gw2, envelope, key, nonce=nonce)
        assert (status, problem["code"]) == (401, "replay")
    finally:
        await gw2.stop()


async def test_clock_skew_answer_carries_server_time(world: World, gw: Gateway, session, sheets) -> None:
    import time

    envelope = world.batch("TAB-0001", 1, sheets(1))
    before = time.time_ns() // 1_000_000
    status, problem = await post_batch(
        session, gw, envelope, world.tablets["TAB-0001"], created=int(time.time()) - 3600
    )
    assert (status, problem["code"]) == (401, "clock-skew")
    assert problem["server_time_ms"] >= before
    assert db_rows(gw.db_path, "SELECT count(*) FROM batches") == [(0,)]


async def test_sync_state_reports_gaps_signed(world: World, gw: Gateway, session, sheets) -> None:
    from wire import parse_sync_state

    from .harness import sign

    key = world.tablets["TAB-0001"]
    for seq in (1, 2, 4):
        status, _ = await post_batch(session, gw, world.batch("TAB-0001", seq, sheets(1, seed=seq)), key)
        assert status == 200
    url = f"{gw.url}/v1/devices/TAB-0001/state"
    async with session.get(url, headers=sign("GET", url, key)) as resp:
        assert resp.status == 200
        body = await resp.json()
    import base64

    state = parse_sync_state(base64.b64decode(body["sync_state"]), world.gateway_keys)
    assert (state.highest_contiguous, state.max_seq, state.gaps) == (2, 4, ((3, 3),))
    assert body["gaps"] == [[3, 3]]
    other = world.tablets["TAB-0002"]
    async with session.get(url, headers=sign("GET", url, other)) as resp:
        assert resp.status == 403
        assert (await resp.json())["code"] == "forbidden"


async def test_ops_endpoints(gw: Gateway, session) -> None:
    async with session.get(f"{gw.url}/healthz") as resp:
        assert resp.status == 200
    async with session.get(f"{gw.url}/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["ready"] is True
    async with session.get(f"{gw.url}/metrics") as resp:
        text = await resp.text()
        assert "sanaq_gateway_registry_version 1.0" in text
    async with session.get(f"{gw.url}/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["code"] == "not-found"
