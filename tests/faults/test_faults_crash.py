"""The gateway process SIGKILLed again and again under fleet load: nothing lost, nothing doubled.

Eight tablets post their batches concurrently (retrying across restarts) to
the real ``python -m gateway serve`` process. The process is SIGKILLed at
once, whatever it is doing, each time the clients together hold another
``step`` receipts or (every other kill) the gateway has logged another
``step`` ``batch.stored`` events, and restarted on the same SQLite file.
Afterwards:

* every receipt any client holds verifies and is byte-for-byte the receipt
  stored with exactly one batch of the same hash (nothing acknowledged is
  missing);
* every batch is stored once, with all its sheets once (nothing doubled);
* a final resend of every batch gets ``duplicate`` and the same receipt;
* ``PRAGMA integrity_check`` is ``ok`` and the last process stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.harness import World
from wire import decode_envelope, parse_receipt

from .bed import GatewayProcess, stored_batches
from .load import Link, ReceiptBook, TabletLoad, fleet_envelopes, post_envelope


async def run_kill_loop(
    world: World, tmp_path: Path, sheets, make_bed, *, batches: int, kills: int, fault_ledger
) -> None:
    envelopes = fleet_envelopes(world, batches, sheets)
    total = sum(len(v) for v in envelopes.values())
    step = total // (kills + 1)
    bed = make_bed(world, tmp_path / "gw")
    link = Link("")
    book = ReceiptBook(tmp_path / "receipts.jsonl", world.gateway_keys)
    fired = asyncio.Event()
    trigger = Trigger(step)
    book.listeners.append(trigger.on_receipts)

    async def start() -> GatewayProcess:
        gp = await bed.start()
        trigger.attach(gp, link, fired)
        return gp

    gp = await start()
    await link.publish(gp.url)
    loads = [TabletLoad(d, world.tablets[d], envs, book, link) for d, envs in envelopes.items()]
    killed = 0
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with asyncio.TaskGroup() as tg:
            clients = [tg.create_task(load.run(session)) for load in loads]
            all_done = tg.create_task(asyncio.wait(clients))
            while killed < kills:
                # odd kills: right after the clients hold N receipts; even kills: right after the
                # gateway logged its Nth ``batch.stored`` (committed, answer maybe not yet sent)
                trigger.arm(on_log=killed % 2 == 1, at=step * (killed + 1))
                waiter = tg.create_task(fired.wait())
                await asyncio.wait([waiter, all_done], return_when=asyncio.FIRST_COMPLETED)
                if not fired.is_set():
                    waiter.cancel()
                    break
                assert await gp.kill() == -9
                killed += 1
                fired.clear()
                gp = await start()
                await link.publish(gp.url)
        assert killed == kills, f"the fleet finished after {killed} kills; raise the load"

        # Every batch once more: each must be a duplicate carrying the receipt its client holds.
        resend_mismatch = 0
        for load in loads:
            for seq, envelope in enumerate(load.envelopes, 1):
                answer = await post_envelope(session, link.url, envelope, load.key)
                assert answer.status == 200, answer
                held = book.receipts[(load.device_id, seq)]
                if not answer.body["duplicate"] or answer.body["receipt"] != _b64(held):
                    resend_mismatch += 1
    assert await gp.terminate() == 0

    stored = stored_batches(bed.db_path)
    from_file = book.from_file()
    lost = 0
    for (device_id, seq), raw in from_file.items():
        receipt = parse_receipt(raw, world.gateway_keys)
        row = stored.get((device_id, seq))
        if row is None or row[0] != receipt.batch_hash or row[1] != raw:
            lost += 1
    expected = {
        (d, seq): (decode_envelope(env).batch_hash, decode_envelope(env).header.record_count)
        for d, envs in envelopes.items()
        for seq, env in enumerate(envs, 1)
    }
    doubled = sum(1 for key, row in stored.items() if key in expected and row[2] != expected[key][1])
    doubled += len(set(stored) - set(expected))
    with contextlib.closing(sqlite3.connect(bed.db_path)) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        hashes = conn.execute("SELECT count(*), count(DISTINCT batch_hash) FROM batches").fetchone()
    interrupted = sum(load.interrupted for load in loads)
    crashes = bed.failed_requests_logged() + book.statuses.get(500, 0)
    fault_ledger.add(
        inputs=book.requests + total, faults=killed, lost=lost, duplicates=doubled, crashes=crashes
    )

    assert from_file == book.receipts
    assert set(book.receipts) == set(expected), "some batch was never receipted"
    assert lost == 0, "a receipt a client holds has no matching stored batch"
    assert doubled == 0 and hashes[0] == hashes[1] == total
    assert {k: v[0] for k, v in stored.items()} == {k: v[0] for k, v in expected.items()}
    assert resend_mismatch == 0, "a resend did not get the receipt its client holds"
    assert integrity == [("ok",)]
    assert crashes == 0
    assert set(book.statuses) == {200}, book.statuses
    assert interrupted >= kills, "the kills hit no request in flight"


class Trigger:
    """Sends SIGKILL synchronously, in the callback that observed the Nth event: no await in between."""

    def __init__(self, step: int) -> None:
        self.target = step
        self.on_log = False
        self.armed = False
        self.stored_logged = 0
        self.gp: GatewayProcess | None = None
        self.link: Link | None = None
        self.fired: asyncio.Event | None = None

    def attach(self, gp: GatewayProcess, link: Link, fired: asyncio.Event) -> None:
        self.gp, self.link, self.fired = gp, link, fired
        gp.on_log.append(self._log_line)

    def arm(self, *, on_log: bool, at: int) -> None:
        self.on_log, self.target, self.armed = on_log, at, True

    def _log_line(self, line: bytes) -> None:
        if b'"batch.stored"' in line:
            self.stored_logged += 1
            if self.on_log and self.stored_logged >= self.target:
                self._fire()

    def on_receipts(self, n: int) -> None:
        if not self.on_log and n >= self.target:
            self._fire()

    def _fire(self) -> None:
        if not self.armed:
            return
        assert self.gp is not None and self.link is not None and self.fired is not None
        self.armed = False
        self.link.mark_down()
        self.gp.proc.send_signal(signal.SIGKILL)
        self.fired.set()


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


async def test_gateway_sigkilled_five_times_under_fleet_load_loses_and_doubles_nothing(
    tmp_path: Path, sheets, fault_ledger, make_bed
) -> None:
    world = World.make(n_tablets=8, n_stations=1)
    await run_kill_loop(world, tmp_path, sheets, make_bed, batches=20, kills=5, fault_ledger=fault_ledger)


@pytest.mark.slow
async def test_soak_gateway_sigkilled_twenty_times(tmp_path: Path, sheets, fault_ledger, make_bed) -> None:
    world = World.make(n_tablets=16, n_stations=1)
    await run_kill_loop(world, tmp_path, sheets, make_bed, batches=40, kills=20, fault_ledger=fault_ledger)
