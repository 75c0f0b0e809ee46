"""Two real ``sanaq-gateway serve`` processes on one PostgreSQL database, a tablet fleet spread over
both, one instance SIGKILLed mid-run. Clients fail over to the other instance with a fresh
signature. Afterwards every receipt a client holds is the one stored receipt of exactly one batch."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import pytest

from keys.files import save_data_key, save_signing_key
from tablet.generator import generate_sheets
from wire import parse_receipt

from .harness import World, sign
from .pg_cluster import Cluster, create_database, drop_database, pg_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres

BATCH = "application/vnd.sanaq.batch"
TABLETS = 10
SEQS = 8
KILL_AFTER = 25  # stored batches before instance gw-1 is killed (while it holds requests)


@dataclass
class Instance:
    name: str
    proc: asyncio.subprocess.Process
    url: str
    drain: asyncio.Task[None]


async def start_instance(
    world: World,
    tmp: Path,
    name: str,
    dsn: str,
    *,
    snapshot: bytes | None = None,
    server_toml: str = "",
    staff_toml: str = "enabled = false\n",
) -> Instance:
    """``python -m gateway serve`` on ``dsn``; ``snapshot`` is the bootstrap file every instance shares."""
    home = tmp / name
    home.mkdir()
    save_data_key(home / "data.key", world.data)
    save_signing_key(home / "gateway.key", world.receipt)  # one receipt key for the whole deployment
    (home / "registry.snapshot").write_bytes(snapshot if snapshot is not None else world.snapshot(version=1))
    (home / "gateway.toml").write_text(
        f'database = "{dsn}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = 0\nplain_http = true\ninstance_id = "{name}"\nworkers = 1\n{server_toml}'
        f'[keys]\nroot_public_key = "{bytes(world.root.verify_key).hex()}"\n'
        'data_key = "data.key"\nreceipt_key = "gateway.key"\nbootstrap_snapshot = "registry.snapshot"\n'
        "[commit]\nmax_group = 64\nmax_wait_ms = 2.0\n"
        f"[staff]\n{staff_toml}"
    )
    with (home / "stdout.log").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(home / "gateway.toml"),
            stdout=out,
            stderr=asyncio.subprocess.PIPE,
        )
    assert proc.stderr is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        seen.append(line)
        assert line, f"{name} exited before listening: {''.join(seen)[-2000:]}"
        if "listening" in line:
            break

    async def drain() -> None:  # keep the pipe from filling up
        assert proc.stderr is not None
        while await proc.stderr.readline():
            pass

    return Instance(name, proc, "http://" + line.rsplit(" on ", 1)[1].strip(), asyncio.create_task(drain()))


@dataclass
class Fleet:
    world: World
    instances: list[Instance]
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    stored: int = 0
    answered_by: Counter[str] = field(default_factory=Counter)
    failovers: int = 0
    inflight: Counter[str] = field(default_factory=Counter)
    inflight_at_kill: int = 0
    receipts: list[tuple[str, int, bytes, bool]] = field(default_factory=list)  # device, seq, receipt, duplicate

    async def deliver(self, session: aiohttp.ClientSession, device_id: str, envelope: bytes, first: int) -> bytes:
        """Send until some instance answers 200, switching instance after every failure."""
        key = self.world.tablets[device_id]
        for attempt in range(10):
            inst = self.instances[(first + attempt) % len(self.instances)]
            target = f"{inst.url}/v1/batches"
            self.inflight[inst.name] += 1
            try:
                async with session.post(target, data=envelope, headers=sign("POST", target, key, envelope, BATCH)) as r:
                    answer = await r.json(content_type=None)
                    if r.status == 200:
                        self.answered_by[inst.name] += 1
                        raw = base64.b64decode(answer["receipt"])
                        self.receipts.append((device_id, answer["seq"], raw, answer["duplicate"]))
                        return raw
                    assert r.status in (429, 503), (inst.name, r.status, answer)  # never conflict or replay
            except (TimeoutError, aiohttp.ClientError):
                pass
            finally:
                self.inflight[inst.name] -= 1
            self.failovers += 1
        raise AssertionError(f"no instance took {device_id}")

    async def tablet(self, session: aiohttp.ClientSession, index: int, device_id: str) -> None:
        for seq in range(1, SEQS + 1):
            sheets = generate_sheets(index * 100 + seq, 2, device_id=device_id)
            envelope = self.world.batch(device_id, seq, sheets)
            first = (index + seq) % 2
            if seq == 3:  # the same batch raced on both instances at once
                one, two = await asyncio.gather(
                    self.deliver(session, device_id, envelope, first),
                    self.deliver(session, device_id, envelope, first + 1),
                )
                assert one == two
            else:
                receipt = await self.deliver(session, device_id, envelope, first)
                if seq % 3 == 0 or seq == 5:  # a resend (lost answer) lands on the other instance
                    assert await self.deliver(session, device_id, envelope, first + 1) == receipt
            self.stored += 1
            victim = self.instances[0]
            if self.stored >= KILL_AFTER and self.inflight[victim.name] and not self.killed.is_set():
                self.inflight_at_kill = self.inflight[victim.name]  # requests it holds right now
                victim.proc.send_signal(signal.SIGKILL)
                self.killed.set()


@contextlib.asynccontextmanager
async def database(cluster: Cluster) -> AsyncIterator[str]:
    name = await create_database(cluster)
    try:
        yield name
    finally:
        await drop_database(cluster, name)


async def test_two_instances_one_killed_every_receipt_is_one_stored_batch(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    world = World.make(n_tablets=TABLETS, n_stations=1)
    async with database(cluster) as dbname:
        dsn = cluster.dsn(dbname)
        shared = world.snapshot(version=1)  # the one bootstrap file of the deployment
        instances = list(
            await asyncio.gather(*(start_instance(world, tmp_path, f"gw-{i}", dsn, snapshot=shared) for i in (1, 2)))
        )
        fleet = Fleet(world, instances)
        try:
            timeout = aiohttp.ClientTimeout(total=20)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await asyncio.wait_for(
                    asyncio.gather(*(fleet.tablet(session, i, d) for i, d in enumerate(world.tablets))), 90
                )
                assert await asyncio.wait_for(instances[0].proc.wait(), 10) == -signal.SIGKILL
                async with session.get(f"{instances[1].url}/readyz") as r:
                    assert r.status == 200
            instances[1].proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(instances[1].proc.wait(), 30) == 0
        finally:
            for inst in instances:
                if inst.proc.returncode is None:
                    inst.proc.kill()
                    await inst.proc.wait()
                inst.drain.cancel()

        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cur = await conn.execute("SELECT device_id, seq, batch_hash, receipt FROM batches")
            rows = await cur.fetchall()
            cur = await conn.execute("SELECT count(*) FROM sheets")
            sheets = (await cur.fetchone() or [0])[0]

    assert fleet.killed.is_set() and fleet.inflight_at_kill > 0
    assert fleet.answered_by["gw-1"] > 0 and fleet.answered_by["gw-2"] > 0, fleet.answered_by
    assert fleet.failovers > 0, "the kill interrupted no client"
    stored: dict[tuple[str, int], tuple[bytes, bytes]] = {}
    for device_id, seq, batch_hash, receipt in rows:
        assert (device_id, seq) not in stored, f"({device_id}, {seq}) stored twice"
        stored[(device_id, seq)] = (bytes(batch_hash), bytes(receipt))
    assert len(stored) == TABLETS * SEQS
    assert sheets == TABLETS * SEQS * 2
    held: dict[tuple[str, int], set[bytes]] = {}
    for device_id, seq, raw, _ in fleet.receipts:
        parsed = parse_receipt(raw, world.gateway_keys)
        assert (parsed.device_id, parsed.seq) == (device_id, seq)
        assert stored[(device_id, seq)] == (parsed.batch_hash, raw), "a client holds a receipt that is not stored"
        held.setdefault((device_id, seq), set()).add(raw)
    assert set(held) == set(stored)
    assert all(len(receipts) == 1 for receipts in held.values())  # whichever instance answered
    assert any(duplicate for *_, duplicate in fleet.receipts)
