"""``[server] workers = 2``: the real ``sanaq-gateway serve`` supervisor and its two worker processes.

Which worker takes a connection is the kernel's choice (both accept on one
socket); a test that needs a given worker stops the other with SIGSTOP, so it
cannot accept, and lets it go on with SIGCONT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gwclient.client import SignedGatewayClient
from gwclient.errors import GatewayUnreachable
from tablet.generator import generate_sheets
from tests.faults.bed import GatewayBed, GatewayProcess, stored_batches
from wire import parse_receipt

from .harness import World, sign, until
from .staff_browser import StaffClient

BATCH = "application/vnd.sanaq.batch"
STAFF_PASSWORD = "seven workers queue at one kiosk"


@dataclass
class Log:
    """The JSON log lines of the supervisor and its workers, as they come (``GatewayProcess.on_log``)."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def take(self, line: bytes) -> None:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                self.records.append(record)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == event]

    def worker_pids(self) -> dict[int, int]:
        """worker index -> pid of its latest process, from the supervisor's ``gateway.worker.started``."""
        return {e["worker"]: e["pid"] for e in self.events("gateway.worker.started")}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    return True


def established_sockets(pid: int, but_peer_port: int = 0) -> int:
    """TCP connections in state ESTABLISHED that ``pid`` holds (its fds matched against /proc/net/tcp), but
    the one whose other end is ``but_peer_port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                count += fields[3] == "01" and fields[9] in inodes and int(fields[2][-4:], 16) != but_peer_port
    return count


@contextlib.contextmanager
def stopped(pid: int) -> Any:
    """SIGSTOP ``pid`` (it cannot accept) for the block."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass
class Bed:
    bed: GatewayBed
    gp: GatewayProcess
    log: Log

    @property
    def url(self) -> str:
        return self.gp.url


@contextlib.asynccontextmanager
async def two_workers(world: World, root: Path, limits_toml: str = "") -> AsyncIterator[Bed]:
    bed = GatewayBed(world, root, workers=2, limits_toml=limits_toml)
    log = Log()
    gp = await bed.start(on_log=log.take)
    try:
        await until(lambda: len(log.worker_pids()) == 2, timeout_s=10, what="two workers in the log")
        yield Bed(bed, gp, log)
    finally:
        await bed.kill_all()


def batch(world: World, seq: int) -> bytes:
    """TAB-0001's batch ``seq`` of one sheet."""
    return world.batch("TAB-0001", seq, generate_sheets(seq, 1, device_id="TAB-0001"))


async def post(session: aiohttp.ClientSession, url: str, world: World, device_id: str, envelope: bytes,
               nonce: str | None = None) -> tuple[int, dict[str, Any]]:
    target = f"{url}/v1/batches"
    headers = sign("POST", target, world.tablets[device_id], envelope, BATCH, nonce=nonce)
    async with session.post(target, data=envelope, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith((name + " ", name + "{")))


async def inflight_metric(url: str) -> tuple[float, int]:
    """``sanaq_gateway_ingest_inflight`` over a connection of its own (``Connection: close``, read to the
    end), and that connection's local port."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        text = (await reader.read()).decode()
        local_port = writer.get_extra_info("sockname")[1]
    finally:
        writer.close()
    value = sum(float(line.split()[-1]) for line in text.split("\r\n\r\n", 1)[1].splitlines()
                if line.startswith("sanaq_gateway_ingest_inflight"))
    return value, local_port


@dataclass
class Tablets:
    """Tablets syncing through the client the tablets use (``gwclient``, keep-alive connections): each batch is
    sent until it is answered 200; a failure (connection reset, 429/5xx) is retried with a fresh signature."""

    world: World
    url: str
    failures: Counter[str] = field(default_factory=Counter)  # "reset" or the HTTP status of a retried answer
    receipts: dict[tuple[str, int], bytes] = field(default_factory=dict)
    envelopes: dict[tuple[str, int], bytes] = field(default_factory=dict)
    stored: int = 0

    async def deliver(self, client: SignedGatewayClient, device_id: str, seq: int, envelope: bytes) -> None:
        for _ in range(60):
            try:
                answer = await client.post_batch(envelope)
            except GatewayUnreachable as e:  # GatewayRefused (conflict, replay, ...) fails the test
                self.failures[str(e.facts.get("status", "reset"))] += 1
                await asyncio.sleep(0.05)
                continue
            self.receipts[(device_id, seq)] = answer.receipt
            self.stored += 1
            return
        raise AssertionError(f"({device_id}, {seq}) never stored")

    async def tablet(self, index: int, device_id: str, seqs: int) -> None:
        key = self.world.tablets[device_id]
        # one keep-alive connection a tablet: while its batch waits, that connection carries a request
        async with SignedGatewayClient(self.url, key, ssl_context=None, timeout_s=60, connections=1) as client:
            for seq in range(1, seqs + 1):
                sheets = generate_sheets(index * 100 + seq, 2, device_id=device_id)
                envelope = self.world.batch(device_id, seq, sheets)
                self.envelopes[(device_id, seq)] = envelope
                await self.deliver(client, device_id, seq, envelope)


async def test_sigkill_of_a_worker_under_load_is_replaced_and_loses_or_doubles_nothing(tmp_path: Path) -> None:
    world = World.make(n_tablets=8)
    seqs = 6
    async with two_workers(world, tmp_path / "bed") as b:
        victim = b.log.worker_pids()[1]
        fleet = Tablets(world, b.url)

        async def killer() -> None:
            await until(lambda: fleet.stored >= 12, timeout_s=60, what="a dozen batches stored before the kill")
            # Hold the store's write lock (the workers wait on it, no 500) until every tablet still sending
            # has its batch in flight, so each connection the victim holds carries an unanswered request:
            # the kill then certainly cuts a client off.
            blocker = sqlite3.connect(b.bed.db_path, isolation_level=None, timeout=30)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                for _ in range(1500):
                    sending = sum(len([k for k in fleet.receipts if k[0] == d]) < seqs for d in world.tablets)
                    inflight, probe_port = await inflight_metric(b.url)
                    if sending and inflight == sending and established_sockets(victim, probe_port) > 0:
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("the victim never held a request in flight")
                os.kill(victim, signal.SIGKILL)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()

        await asyncio.wait_for(
            asyncio.gather(killer(), *(fleet.tablet(i, d, seqs) for i, d in enumerate(world.tablets))), 120
        )
        await until(lambda: b.log.worker_pids().get(1, victim) != victim, timeout_s=30, what="worker 1 replaced")
        await until(lambda: bool(b.log.events("gateway.worker.ready")), timeout_s=30, what="the new worker ready")
        died = b.log.events("gateway.worker.died")
        assert [(e["worker"], e["pid"], e["exit_status"]) for e in died] == [(1, victim, -signal.SIGKILL)]
        assert died[0]["level"] == "warning" and died[0]["hint"]

        # every batch again, over both workers: the same receipt, marked duplicate
        async with aiohttp.ClientSession() as session:
            for (device_id, seq), envelope in fleet.envelopes.items():
                status, answer = await post(session, b.url, world, device_id, envelope)
                assert status == 200 and answer["duplicate"] is True
                assert base64.b64decode(answer["receipt"]) == fleet.receipts[(device_id, seq)]
            assert await metric(session, b.url, "sanaq_gateway_batches_duplicate_total") >= len(fleet.envelopes) - 1

        assert await b.gp.terminate() == 0
    stopped_workers = b.log.events("gateway.worker.stopped")
    assert sorted((e["worker"], e["exit_status"]) for e in stopped_workers) == [(0, 0), (1, 0)]
    assert b.bed.failed_requests_logged() == 0
    assert set(fleet.failures) <= {"reset", "429", "503"}, fleet.failures  # never a 500
    assert fleet.failures["reset"] > 0, "the kill interrupted no client"
    stored = stored_batches(b.bed.db_path)
    assert len(stored) == len(world.tablets) * seqs  # each (device, seq) once: it is the primary key
    for (device_id, seq), raw in fleet.receipts.items():
        receipt = parse_receipt(raw, world.gateway_keys)
        assert stored[(device_id, seq)][:2] == (receipt.batch_hash, raw)
        assert stored[(device_id, seq)][2] == 2


async def test_both_workers_take_batches_and_metrics_count_the_whole_gateway(tmp_path: Path) -> None:
    world = World.make(n_tablets=1)
    async with two_workers(world, tmp_path / "bed") as b:
        pids = b.log.worker_pids()
        for seq, other in enumerate((pids[1], pids[0]), start=1):
            with stopped(other):  # only the other worker accepts
                async with aiohttp.ClientSession() as session:
                    envelope = batch(world, seq)
                    status, _ = await post(session, b.url, world, "TAB-0001", envelope)
                    assert status == 200
        async with aiohttp.ClientSession() as session:
            assert await metric(session, b.url, "sanaq_gateway_batches_stored_total") == 2
        assert Counter(e["worker"] for e in b.log.events("batch.stored")) == {0: 1, 1: 1}
        assert await b.gp.terminate() == 0


async def test_a_nonce_used_on_one_worker_is_refused_on_the_other(tmp_path: Path) -> None:
    world = World.make(n_tablets=1)
    nonce = base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")
    async with two_workers(world, tmp_path / "bed") as b:
        pids = b.log.worker_pids()
        with stopped(pids[1]):
            async with aiohttp.ClientSession() as session:
                first = batch(world, 1)
                status, _ = await post(session, b.url, world, "TAB-0001", first, nonce)
                assert status == 200
        with stopped(pids[0]):
            async with aiohttp.ClientSession() as session:
                other = batch(world, 2)
                status, answer = await post(session, b.url, world, "TAB-0001", other, nonce)
        assert (status, answer["code"]) == (401, "replay")
        assert [e["worker"] for e in b.log.events("batch.stored")] == [0]
        assert await b.gp.terminate() == 0
    assert set(stored_batches(b.bed.db_path)) == {("TAB-0001", 1)}


async def test_the_in_flight_cap_holds_across_workers_and_a_killed_worker_frees_its_slot(tmp_path: Path) -> None:
    """Cap 1. The store's write lock is held by this test (the gateway waits on it, no 500), so a batch on
    worker 0 stays in flight; the same device's next batch on worker 1 is refused. Worker 0 is then
    SIGKILLed holding the slot: the kernel frees it and worker 1 takes the device's batch."""
    world = World.make(n_tablets=1)
    async with two_workers(world, tmp_path / "bed", limits_toml="max_inflight_per_device = 1") as b:
        pids = b.log.worker_pids()
        blocker = sqlite3.connect(b.bed.db_path, isolation_level=None, timeout=30)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        async with aiohttp.ClientSession() as held, aiohttp.ClientSession() as probe:
            with stopped(pids[1]):
                first = asyncio.create_task(
                    post(held, b.url, world, "TAB-0001", batch(world, 1))
                )
                for _ in range(500):  # /metrics answered by worker 0, the only one accepting
                    if await metric(probe, b.url, "sanaq_gateway_ingest_inflight") == 1:
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("the first batch never got in flight")
            await probe.close()
            with stopped(pids[0]):
                async with aiohttp.ClientSession() as second:
                    status, answer = await post(
                        second, b.url, world, "TAB-0001", batch(world, 2)
                    )
                    assert (status, answer["code"]) == (429, "too-many-requests")
            blocker.execute("ROLLBACK")  # the waiting commit goes through: 200, not 500
            status, _ = await first
            assert status == 200

            blocker.execute("BEGIN IMMEDIATE")
            with stopped(pids[1]):
                third = asyncio.create_task(
                    post(held, b.url, world, "TAB-0001", batch(world, 3))
                )
                async with aiohttp.ClientSession() as probe2:
                    for _ in range(500):
                        if await metric(probe2, b.url, "sanaq_gateway_ingest_inflight") == 1:
                            break
                        await asyncio.sleep(0.02)
                    else:
                        raise AssertionError("the third batch never got in flight")
                os.kill(pids[0], signal.SIGKILL)  # holding the device's one slot
            blocker.execute("ROLLBACK")
            blocker.close()
            with contextlib.suppress(aiohttp.ClientError):
                await third
            async with aiohttp.ClientSession() as fourth:
                status, _ = await post(
                    fourth, b.url, world, "TAB-0001", batch(world, 4)
                )
            assert status == 200
        assert await b.gp.terminate() == 0
    assert b.bed.failed_requests_logged() == 0
    assert {("TAB-0001", 1), ("TAB-0001", 4)} <= set(stored_batches(b.bed.db_path))


async def test_a_killed_supervisor_takes_its_workers_with_it(tmp_path: Path) -> None:
    world = World.make(n_tablets=1)
    async with two_workers(world, tmp_path / "bed") as b:
        pids = list(b.log.worker_pids().values())
        assert await b.gp.kill() == -signal.SIGKILL
        await until(lambda: not any(alive(p) for p in pids), timeout_s=10, what="workers gone with the supervisor")


@pytest.mark.parametrize(("toml", "line"), [
    ("workers = 0", "server.workers must be between 1 and 128 (got 0)"),
    ("workers = 129", "server.workers must be between 1 and 128 (got 129)"),
])
async def test_workers_out_of_range_is_a_config_error(toml: str, line: str, tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(f"[server]\nplain_http = true\n{toml}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode().strip().splitlines() == [f"sanaq-gateway: {line}"]


async def test_a_staff_session_made_on_one_worker_is_valid_on_the_other(tmp_path: Path) -> None:
    world = World.make(n_tablets=1)
    async with two_workers(world, tmp_path / "bed") as b:
        pids = b.log.worker_pids()
        password = tmp_path / "pw.txt"
        password.write_text(STAFF_PASSWORD + "\n")
        staff_db = b.bed.db_path.parent / "staff.db"
        added = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.staff", "add-user", "--db", str(staff_db), "--username", "alice",
            "--role", "viewer", "--password-file", str(password),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(added.communicate(), 60)
        assert added.returncode == 0, err
        client = StaffClient(b)  # type: ignore[arg-type]  # it needs only .url
        try:
            with stopped(pids[1]):
                assert await client.login("alice", STAFF_PASSWORD) == 303
            with stopped(pids[0]):  # a new connection, the same cookies: only worker 1 accepts it
                async with (
                    aiohttp.ClientSession(cookie_jar=client.session.cookie_jar) as other,
                    other.get(f"{b.url}/staff/api/summary") as r,
                ):
                    assert r.status == 200
                    assert "version" in await r.json()
        finally:
            await client.close()
        assert await b.gp.terminate() == 0
