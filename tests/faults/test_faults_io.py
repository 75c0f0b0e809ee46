"""I/O failures under the real gateway process: failed writes and fsyncs, a full disk.

The gateway runs under ``fiu-run -x`` (libfiu's POSIX preload). SQLite writes
its WAL with ``pwrite64`` and syncs it with ``fdatasync`` (checked with
strace), so the failure points are ``posix/io/rw/pwrite`` and
``posix/io/sync/fdatasync``; ``fiu-ctrl`` switches one on for a window
while tablets post, then off. The rules:

* during the window every answer is 200 (a batch really committed) or 503
  ``unavailable`` with ``Retry-After`` -- never 500, never a receipt for a
  batch that was not written;
* after the window the tablets resend whatever they hold no receipt for, and
  after a SIGKILL and a clean restart (no libfiu) a resend of every batch
  gets the receipt its tablet holds: nothing lost, nothing doubled;
* ``PRAGMA integrity_check`` is ``ok``.

The full disk is real: the store lives on an 8 MiB tmpfs, nearly filled with a
ballast file; once SQLite meets ENOSPC the answers are 503, and after the
ballast is removed the resends converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.harness import World
from wire import decode_envelope

from .bed import GatewayBed, GatewayProcess, stored_batches
from .load import Answer, Link, ReceiptBook, TabletLoad, fleet_envelopes, post_envelope

EIO, ENOSPC = 5, 28
BATCHES = 12


@dataclass
class Fleet:
    world: World
    bed: GatewayBed
    book: ReceiptBook
    loads: list[TabletLoad]
    link: Link

    def envelope(self, load: TabletLoad, seq: int) -> bytes:
        return load.envelopes[seq - 1]

    async def post_once(self, session: aiohttp.ClientSession, seqs: range) -> list[Answer]:
        """Each tablet posts ``seqs`` in order, once each; tablets run concurrently."""

        async def one(load: TabletLoad) -> list[Answer]:
            out = []
            for seq in seqs:
                answer = await post_envelope(session, self.link.url, self.envelope(load, seq), load.key)
                self.book.record(load.device_id, seq, answer)
                out.append(answer)
            return out

        results = await asyncio.gather(*(one(load) for load in self.loads))
        return [a for r in results for a in r]

    async def deliver_missing(self, session: aiohttp.ClientSession) -> int:
        """Resend every batch without a receipt; returns how many came back as duplicates."""
        dup = 0
        for load in self.loads:
            for seq in range(1, len(load.envelopes) + 1):
                if (load.device_id, seq) in self.book.receipts:
                    continue
                answer = await post_envelope(session, self.link.url, self.envelope(load, seq), load.key)
                self.book.record(load.device_id, seq, answer)
                assert answer.status == 200, answer
                dup += answer.body["duplicate"]
        return dup

    async def verify_after_clean_restart(self, gp: GatewayProcess) -> tuple[int, int]:
        """SIGKILL, restart without faults, resend all; returns (lost, doubled)."""
        assert await gp.kill() == -9
        gp = await self.bed.start()
        await self.link.publish(gp.url)
        lost = 0
        async with aiohttp.ClientSession() as session:
            for load in self.loads:
                for seq in range(1, len(load.envelopes) + 1):
                    answer = await post_envelope(session, gp.url, self.envelope(load, seq), load.key)
                    held = self.book.receipts.get((load.device_id, seq))
                    if (
                        answer.status != 200
                        or not answer.body["duplicate"]
                        or (held is not None and answer.body["receipt"] != _b64(held))
                    ):
                        lost += 1
        assert await gp.terminate() == 0
        stored = stored_batches(self.bed.db_path)
        for (device_id, seq), raw in self.book.receipts.items():
            row = stored.get((device_id, seq))
            if row is None or row[1] != raw:
                lost += 1
        doubled = 0
        for load in self.loads:
            for seq, env in enumerate(load.envelopes, 1):
                row = stored.get((load.device_id, seq))
                if row is not None and row[2] != decode_envelope(env).header.record_count:
                    doubled += 1
        doubled += max(0, len(stored) - sum(len(x.envelopes) for x in self.loads))
        return lost, doubled


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def make_fleet(world: World, root: Path, sheets, make_bed) -> Fleet:
    bed = make_bed(world, root / "gw")
    book = ReceiptBook(root / "receipts.jsonl", world.gateway_keys)
    link = Link("")
    envelopes = fleet_envelopes(world, BATCHES, sheets)
    loads = [TabletLoad(d, world.tablets[d], envs, book, link) for d, envs in envelopes.items()]
    return Fleet(world, bed, book, loads, link)


def integrity(db: Path) -> list[tuple[str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall()


def assert_unavailable(answer: Answer) -> None:
    assert answer.status == 503, answer
    assert answer.body["code"] == "unavailable" and answer.body["type"] == "urn:sanaq:problem:unavailable"
    assert answer.retry_after is not None and int(answer.retry_after) > 0
    assert isinstance(answer.body["server_time_ms"], int)


FIU_CASES = [
    ("fdatasync-eio", "posix/io/sync/fdatasync", EIO, None),
    ("pwrite-eio", "posix/io/rw/pwrite", EIO, None),
    ("pwrite-enospc", "posix/io/rw/pwrite", ENOSPC, None),
    ("fdatasync-eio-half-the-time", "posix/io/sync/fdatasync", EIO, 0.5),
]


@pytest.mark.usefixtures("need_fiu_run")
@pytest.mark.parametrize(("point", "errno", "probability"), [c[1:] for c in FIU_CASES], ids=[c[0] for c in FIU_CASES])
async def test_failed_write_or_fsync_never_leads_to_a_receipt(
    point: str,
    errno: int,
    probability: float | None,
    world: World,
    tmp_path: Path,
    sheets,
    fault_ledger,
    make_bed,
) -> None:
    fleet = make_fleet(world, tmp_path, sheets, make_bed)
    gp = await fleet.bed.start(fiu=True)
    await fleet.link.publish(gp.url)
    async with aiohttp.ClientSession() as session:
        healthy = await fleet.post_once(session, range(1, 5))
        assert {a.status for a in healthy} == {200}

        if probability is None:
            await gp.fiu(f"enable name={point},failnum=1,failinfo={errno}")
        else:
            await gp.fiu(f"enable_random name={point},probability={probability},failnum=1,failinfo={errno}")
        window = await fleet.post_once(session, range(5, 9))
        for _ in range(20 if probability is not None else 0):  # random faults: resend until one fires
            if any(answer.status != 200 for answer in window):
                break
            window += await fleet.post_once(session, range(5, 9))  # stored ones answer as duplicates
        # a resend of a stored batch needs a durable nonce: refused too, or answered with its receipt
        again = await fleet.post_once(session, range(1, 2))
        await gp.fiu(f"disable name={point}")

        refused = [a for a in window + again if a.status != 200]
        for answer in refused:
            assert_unavailable(answer)
        if probability is None:
            assert len(refused) == len(window) + len(again), "a receipt was issued while every write/fsync failed"
        else:
            assert refused, "the failure point never fired"
        for answer in again:
            if answer.status == 200:
                assert answer.body["duplicate"] is True

        written_unacknowledged = await fleet.deliver_missing(session)
        fresh = await fleet.post_once(session, range(9, BATCHES + 1))
        assert {a.status for a in fresh} == {200}
    lost, doubled = await fleet.verify_after_clean_restart(gp)
    crashes = fleet.book.statuses.get(500, 0) + fleet.bed.failed_requests_logged()
    fault_ledger.add(
        inputs=fleet.book.requests, faults=len(refused), lost=lost, duplicates=doubled, crashes=crashes
    )
    assert (lost, doubled, crashes) == (0, 0, 0)
    assert set(fleet.book.statuses) <= {200, 503}
    assert len(fleet.book.receipts) == len(world.tablets) * BATCHES
    assert written_unacknowledged <= len(refused)
    assert integrity(fleet.bed.db_path) == [("ok",)]


# ---- a full disk under the store ------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}", pytrace=False)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(path: Path, leave_bytes: int) -> None:
    """Write a ballast file until ``leave_bytes`` stay free on the file system of ``path``."""
    free = shutil.disk_usage(path.parent).free
    with path.open("wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
        f.flush()
        os.fsync(f.fileno())


@pytest.fixture
async def fleet_on_small_disk(world: World, tmp_path: Path, sheets, make_bed) -> AsyncIterator[tuple[Fleet, Path]]:
    fleet = make_fleet(world, tmp_path, sheets, make_bed)
    with small_tmpfs(fleet.bed.db_path.parent, "8m") as mount:
        yield fleet, mount
        await fleet.bed.kill_all()  # before the unmount


async def test_disk_full_under_the_store_is_503_and_resends_converge(
    fleet_on_small_disk: tuple[Fleet, Path], world: World, fault_ledger
) -> None:
    fleet, mount = fleet_on_small_disk
    gp = await fleet.bed.start()
    await fleet.link.publish(gp.url)
    ballast = mount / "ballast"
    async with aiohttp.ClientSession() as session:
        assert {a.status for a in await fleet.post_once(session, range(1, 3))} == {200}
        fill(ballast, leave_bytes=64 * 1024)
        window = await fleet.post_once(session, range(3, BATCHES + 1))
        refused = [a for a in window if a.status != 200]
        for answer in refused:
            assert_unavailable(answer)
        assert refused, "the disk never filled up"
        async with session.get(f"{gp.url}/healthz") as resp:
            assert resp.status == 200
        ballast.unlink()
        written_unacknowledged = await fleet.deliver_missing(session)
    lost, doubled = await fleet.verify_after_clean_restart(gp)
    crashes = fleet.book.statuses.get(500, 0) + fleet.bed.failed_requests_logged()
    fault_ledger.add(
        inputs=fleet.book.requests, faults=len(refused), lost=lost, duplicates=doubled, crashes=crashes
    )
    assert (lost, doubled, crashes) == (0, 0, 0)
    assert written_unacknowledged <= len(refused)
    assert len(fleet.book.receipts) == len(world.tablets) * BATCHES
    assert integrity(fleet.bed.db_path) == [("ok",)]
