"""The live dashboard: fleet colours, alerts from real security events, custody log, event stream, exports."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.config import GatewayConfig
from gateway.staff import StaffConfig, StaffConfigError
from gateway.staff.coverage import compute_coverage
from gateway.staff.dashboard import build_model
from gateway.staff.errors import StaffStoreError
from gateway.staff.queries import BatchRow, make_queries
from gateway.staff.state import STAFF
from gateway.staff.tally import CensusTally, DeviceTally
from tablet.generator import generate_sheets
from wire import TabletEntry, UsbHints, compute_gaps, make_custody

from .harness import World, post_batch, sign, until
from .staff_browser import StaffClient, StaffGateway, signed_in, start_staff_gateway, summary

HOUR = 3_600_000
NOW = 1_790_000_000_000


def tablet(device_id: str, status: str = "issued", issued_at_ms: int = NOW - 200 * HOUR) -> TabletEntry:
    return TabletEntry(device_id, b"k" * 16, b"p" * 32, "S", "AB-000001", "W1", status, issued_at_ms, None)


class Snap:
    version = 3
    issued_at_ms = NOW - HOUR
    expires_at_ms = NOW + 100 * HOUR
    stations = ()

    def __init__(self, tablets: list[TabletEntry]) -> None:
        self.tablets = tablets


@pytest.mark.parametrize(
    ("status", "age_h", "issued_h_ago", "colour", "silent"),
    [
        ("issued", 1, 200, "green", False),
        ("issued", 23.9, 200, "green", False),
        ("issued", 24, 200, "amber", False),
        ("issued", 71.9, 200, "amber", False),
        ("issued", 72.1, 200, "red", True),
        ("issued", None, 200, "red", True),  # never synced, issued long ago
        ("issued", None, 1, "red", False),  # never synced but issued an hour ago: not silent yet
        ("returned", 500, 600, "grey", False),
        ("revoked", None, 600, "grey", False),
    ],
)
def test_fleet_colours_and_silent_tablets(status, age_h, issued_h_ago, colour, silent) -> None:
    tally = CensusTally(utc_offset_ms=5 * HOUR)
    if age_h is not None:
        tally.add_batches([BatchRow(1, "TAB-1", 1, NOW - int(age_h * HOUR), "online", 2, 0)])
    snap = Snap([tablet("TAB-1", status, NOW - issued_h_ago * HOUR)])
    model = build_model(
        now_ms=NOW, config=StaffConfig(), tally=tally, snapshot=snap,  # type: ignore[arg-type]
        security=({}, []), quarantine=[], custody=[], custody_seen={},
        coverage=compute_coverage([], {}, {}), checks=[],
    )  # fmt: skip
    (row,) = model.fleet
    assert row.colour == colour
    assert any(a.kind == "silent" and a.subject == "TAB-1" for a in model.alerts) is silent


def test_device_tally_matches_the_signed_sync_state_rule() -> None:
    rng = random.Random(5)
    for _ in range(200):
        seqs = rng.sample(range(1, 40), rng.randint(0, 25))
        device = DeviceTally("TAB-1")
        for n, s in enumerate(seqs):
            device.add(BatchRow(n, "TAB-1", s, n, "online", 1, 0))
        highest, max_seq, gaps = compute_gaps(seqs)
        assert (device.highest_contiguous, device.max_seq, device.gaps()) == (highest, max_seq, gaps)


def test_on_postgresql_the_dashboard_needs_a_shared_pepper_file_and_then_mounts(
    world_keys: World, tmp_path: Path
) -> None:
    from gateway.server import build_server
    from runtime.toml_config import ConfigError

    class NoStore:  # never opened: the factory decides before anything starts
        pass

    def build(staff: StaffConfig):  # the production factory, as `sanaq-gateway serve` calls it
        config = GatewayConfig(database="postgresql://census@127.0.0.1/census", staff=staff)
        return build_server(
            config,
            NoStore(),  # type: ignore[arg-type]
            data_key=world_keys.data,
            receipt_key=world_keys.receipt,
            root_public_key=bytes(world_keys.root.verify_key),
        )

    with pytest.raises(StaffConfigError, match="codes_pepper_file must be set on PostgreSQL") as refused:
        build(StaffConfig())
    assert isinstance(refused.value, ConfigError)
    pepper = tmp_path / "codes.pepper"
    with pytest.raises(StaffConfigError, match=r"missing: .*codes\.pepper"):  # never made here: one per instance
        build(StaffConfig(codes_pepper_file=pepper))
    assert not pepper.exists()
    pepper.write_bytes(bytes(32))
    server = build(StaffConfig(codes_pepper_file=pepper))
    assert any(r.canonical == "/staff/" for r in server.app.router.resources())
    server = build(StaffConfig(enabled=False))  # disabled: nothing to refuse, nothing mounted
    assert not any(r.canonical.startswith("/staff") for r in server.app.router.resources())


@pytest.fixture
def world_keys() -> World:
    return World.make(n_tablets=1, n_stations=0)


async def test_census_reads_use_a_read_only_connection(tmp_path: Path) -> None:
    db = tmp_path / "census.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE batches (id INTEGER PRIMARY KEY)")
    queries = make_queries(f"sqlite:///{db}", db)
    await queries.open()
    try:
        with pytest.raises(StaffStoreError, match=r"readonly|read-only"):
            await queries._run(lambda c: c.execute("INSERT INTO batches DEFAULT VALUES"))  # type: ignore[attr-defined]
    finally:
        await queries.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (0,)


@pytest.fixture
def world() -> World:
    w = World.make(n_tablets=3, n_stations=2)
    w.status["TAB-0003"] = "revoked"
    return w


@pytest.fixture
async def gw(world: World, tmp_path: Path, staff_database: str) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path, database=staff_database)
    yield gateway
    await gateway.stop()


@pytest.fixture
async def viewer(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    async with signed_in(gw, "viewer") as c:
        yield c



async def post_custody(session: aiohttp.ClientSession, gw: StaffGateway, world: World, device_id: str) -> None:
    record = make_custody(
        station_id="ST-01",
        device_id=device_id,
        pulled_at_ms=1_790_000_000_000,
        manifest_sha256=hashlib.sha256(b"manifest").digest(),
        batches=[(1, hashlib.sha256(b"b1").digest()), (2, hashlib.sha256(b"b2").digest())],
        usb=UsbHints("18d1", "4ee7", "SER1"),
        station_key=world.stations["ST-01"],
    )
    url = f"{gw.url}/v1/custody"
    headers = sign("POST", url, world.stations["ST-01"], record, "application/vnd.sanaq.custody")
    async with session.post(url, data=record, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def test_alerts_and_custody_log_follow_real_gateway_events(world: World, gw: StaffGateway, viewer) -> None:
    key1 = world.tablets["TAB-0001"]
    async with aiohttp.ClientSession() as s:
        good = generate_sheets(3, 3, device_id="TAB-0001")
        bad = dict(good[2]) | {"persons": "not a list"}
        assert (await post_batch(s, gw, world.batch("TAB-0001", 1, [good[0], good[1], bad]), key1))[0] == 200
        conflicting = world.batch("TAB-0001", 1, generate_sheets(4, 1, device_id="TAB-0001"))
        assert (await post_batch(s, gw, conflicting, key1))[0] == 409
        assert (await post_batch(s, gw, world.batch("TAB-0001", 3, good[:1]), key1))[0] == 200
        revoked = world.batch("TAB-0003", 1, generate_sheets(3, 1, device_id="TAB-0003"))
        assert (await post_batch(s, gw, revoked, world.stations["ST-01"]))[0] == 403
        await post_custody(s, gw, world, "TAB-0002")
    status, html, _ = await viewer.get("/staff/")
    assert status == 200
    assert "1 batch conflicts" in html
    assert "1 attempts by revoked or out-of-service devices" in html
    assert "missing batch seq 2" in html
    assert "1 sheets quarantined" in html and "S-20 /persons" in html  # rule id + pointer (docs/census-sheet.md)
    assert "<b>ST-02</b> never heard from" in html and "<b>ST-01</b> never" not in html
    assert '<td class="mono">ST-01</td><td class="mono">TAB-0002</td><td class="num">2</td>' in html
    assert 'id="fleet-TAB-0001" class="row-green"' in html
    assert 'id="fleet-TAB-0003" class="row-grey"' in html
    fleet = (await summary(viewer))["fleet"]
    assert fleet["TAB-0001"] == {"colour": "green", "max_seq": 3, "gaps": 1}
    assert fleet["TAB-0002"]["colour"] == "red"  # issued, never synced


async def read_event(resp: aiohttp.ClientResponse, timeout_s: float = 10.0) -> tuple[str, str]:
    """Next server-sent event (name, data), skipping keep-alive comments."""
    name, data = "message", ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), timeout_s)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            return name, data


async def test_event_stream_pushes_updates_and_ends_with_the_session(world: World, gw: StaffGateway, viewer) -> None:
    async with viewer.session.get(gw.url + "/staff/events") as stream:
        assert stream.status == 200 and stream.content_type == "text/event-stream"
        name, data = await read_event(stream)
        first = json.loads(data)
        assert name == "update" and set(first["fragments"]) == {
            "summary", "alerts", "chart", "fleet", "coverage", "custody"
        }  # fmt: skip
        assert 'data-colour="red"' in first["fragments"]["fleet"]
        async with aiohttp.ClientSession() as s:
            envelope = world.batch("TAB-0002", 1, generate_sheets(8, 2, device_id="TAB-0002"))
            assert (await post_batch(s, gw, envelope, world.tablets["TAB-0002"]))[0] == 200
        while True:
            name, data = await read_event(stream)
            update = json.loads(data)
            if 'id="fleet-TAB-0002" class="row-green"' in update["fragments"]["fleet"]:
                break
        assert update["version"] > first["version"]
        assert '<span class="n" id="n-sheets">2</span>' in update["fragments"]["summary"]
        assert (await viewer.post("/staff/logout", {"csrf": viewer.csrf}))[0] == 303
        while name != "expired":
            name, _ = await read_event(stream)


async def test_the_feed_tallies_only_once_asked_and_rebuilds_only_while_a_stream_is_open(
    world: World, gw: StaffGateway
) -> None:
    """The rebuild walks every counted person; a gateway nobody watches must not pay for it on each commit."""
    feed = gw.app[STAFF].feed
    async with aiohttp.ClientSession() as s:  # before any staff page: stored batches are not even tallied
        envelope = world.batch("TAB-0001", 1, generate_sheets(9, 1, device_id="TAB-0001"))
        assert (await post_batch(s, gw, envelope, world.tablets["TAB-0001"]))[0] == 200
    cycles = feed.cycles
    await until(lambda: feed.cycles >= cycles + 2, timeout_s=10, what="two passes of the feed's loop")
    assert feed.version == 0 and feed.tally.high_water == 0
    async with signed_in(gw, "viewer") as viewer:
        await summary(viewer)  # a page asks for the model: built once, and from now on batches are tallied
        built = feed.version
        assert built > 0 and feed.tally.high_water == await gw_batch_id(gw, "TAB-0001", 1)
        async with aiohttp.ClientSession() as s:
            for seq in (1, 2):  # the second fold needs the feed's lock, so any rebuild after the first has ended
                envelope = world.batch("TAB-0002", seq, generate_sheets(seq, 2, device_id="TAB-0002"))
                assert (await post_batch(s, gw, envelope, world.tablets["TAB-0002"]))[0] == 200
                stored = await gw_batch_id(gw, "TAB-0002", seq)
                await until(lambda stored=stored: feed.tally.high_water >= stored, timeout_s=10,
                            what=f"batch {seq} folded")
        assert feed.watchers == 0 and feed.version == built
        async with viewer.session.get(gw.url + "/staff/events") as stream:
            name, data = await read_event(stream)
            first = json.loads(data)
            assert name == "update" and first["version"] > built
            assert '<span class="n" id="n-sheets">5</span>' in first["fragments"]["summary"]
            assert feed.watchers == 1
            async with aiohttp.ClientSession() as s:  # while it is open, a new batch is pushed without a request
                envelope = world.batch("TAB-0001", 2, generate_sheets(3, 1, device_id="TAB-0001"))
                assert (await post_batch(s, gw, envelope, world.tablets["TAB-0001"]))[0] == 200
            while '<span class="n" id="n-sheets">6</span>' not in first["fragments"]["summary"]:
                first = json.loads((await read_event(stream))[1])
    await until(lambda: feed.watchers == 0, timeout_s=10, what="the stream's end noticed")


async def gw_batch_id(gw: StaffGateway, device_id: str, seq: int) -> int:
    """The stored batch's row id, read from the census store the gateway writes."""
    if gw.on_postgres:
        import psycopg

        async with await psycopg.AsyncConnection.connect(gw.database) as conn:
            row = await (await conn.execute("SELECT id FROM batches WHERE device_id = %s AND seq = %s",
                                            (device_id, seq))).fetchone()
    else:
        with sqlite3.connect(gw.db_path) as conn:
            row = conn.execute("SELECT id FROM batches WHERE device_id = ? AND seq = ?", (device_id, seq)).fetchone()
    assert row is not None
    return int(row[0])


async def test_sheets_export_streams_every_sheet_with_its_batch_provenance(world: World, gw: StaffGateway) -> None:
    async with aiohttp.ClientSession() as s:
        first = world.batch("TAB-0001", 1, generate_sheets(1, 3, device_id="TAB-0001"))
        assert (await post_batch(s, gw, first, world.tablets["TAB-0001"]))[0] == 200
        second = world.batch("TAB-0002", 1, generate_sheets(2, 2, device_id="TAB-0002"))
        assert (await post_batch(s, gw, second, world.stations["ST-01"]))[0] == 200
    admin = StaffClient(gw)
    try:
        assert await admin.login("admin") == 303
        status, body, resp = await admin.get("/staff/export/sheets.jsonl")
    finally:
        await admin.close()
    assert status == 200 and resp.content_type == "application/x-ndjson"
    assert "attachment" in resp.headers["Content-Disposition"]
    lines = [json.loads(line) for line in body.splitlines()]
    expected = [
        (*r[:4], bytes(r[4]).hex(), *r[5:])
        for r in gw.census_rows(
            "SELECT b.device_id, b.seq, b.received_at_ms, b.road, b.batch_hash, s.idx, s.sheet_id, s.body"
            " FROM sheets s JOIN batches b ON b.id = s.batch_id ORDER BY b.id, s.idx"
        )
    ]
    got = [
        (
            x["device_id"],
            x["seq"],
            x["received_at_ms"],
            x["road"],
            x["batch_hash"],
            x["index"],
            x["sheet_id"],
            x["sheet"],
        )
        for x in lines
    ]
    assert [g[:7] for g in got] == [e[:7] for e in expected] and len(got) == 5
    assert [g[7] for g in got] == [json.loads(e[7]) for e in expected]
    assert {g[3] for g in got} == {"online", "station:ST-01"}
