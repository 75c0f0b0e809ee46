"""Resource attacks: compressed-body bombs, oversize and lying bodies, slow clients, floods.

A network attacker inside the VPN needs no key to send bytes. The gateway must
refuse compressed bodies without inflating them, cap bodies whatever framing
they come in, and keep serving enrolled tablets while unauthenticated floods
and slowloris connections (headers sent a byte at a time, never finished) are
running. Starvation is measured with counts: every authentic batch must be
receipted while the attack runs (a generous overall timeout only guards the
test from hanging).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from gateway.config import LimitsConfig
from tests.gateway.harness import Gateway, World, sign, until

from .attack_bed import gateway_for, send, store_state
from .bed import GatewayBed, StartRefused
from .load import Link, ReceiptBook, TabletLoad, fleet_envelopes, post_envelope

BATCH = "application/vnd.sanaq.batch"
BOMB = 64 * 1024 * 1024  # inflates to 64 MiB, 16 times the body cap


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data, 9)


ENCODINGS = [
    pytest.param("gzip", gzip.compress, id="gzip bomb"),
    pytest.param("deflate", _deflate, id="deflate bomb"),
    pytest.param("x-gzip", gzip.compress, id="x-gzip bomb"),
    pytest.param("identity, gzip", gzip.compress, id="gzip listed after identity"),
    pytest.param("br", gzip.compress, id="br claimed on a gzip body"),
]


@pytest.mark.parametrize(("encoding", "compress"), ENCODINGS)
async def test_compressed_body_is_refused_not_inflated(
    encoding: str, compress: Callable[[bytes], bytes], world: World, tmp_path: Path, session, fault_ledger
) -> None:
    body = compress(b"\0" * BOMB)
    assert len(body) < 256 * 1024
    async with gateway_for(world, tmp_path / "c.db") as gw:
        url = f"{gw.url}/v1/batches"
        headers = {**sign("POST", url, world.tablets["TAB-0001"], body, BATCH), "Content-Encoding": encoding}
        before = store_state(gw.db_path)
        answer = await send(session, "POST", url, headers, body)
        after = store_state(gw.db_path)
    fault_ledger.add(inputs=1, forgeries_tried=1, forgeries=int(answer.status == 200),
                     crashes=int(answer.status >= 500))
    assert (answer.status, answer.code) == (415, "unsupported-media-type"), answer
    assert after == before


async def _raw_exchange(gw: Gateway, request: bytes) -> bytes:
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(30):
            return await reader.read(65536)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _status_and_code(raw: bytes) -> tuple[int, str | None]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    code = None
    if b'"code"' in body:
        code = body.split(b'"code": "', 1)[1].split(b'"', 1)[0].decode()
    return status, code


def _head(gw: Gateway, headers: dict[str, str], extra: str) -> bytes:
    authority = gw.url.removeprefix("http://")
    lines = ["POST /v1/batches HTTP/1.1", f"Host: {authority}", *(f"{k}: {v}" for k, v in headers.items()), extra]
    return ("\r\n".join(x for x in lines if x) + "\r\n\r\n").encode()


def _chunked(body: bytes, size: int = 16384) -> bytes:
    parts = [
        f"{len(body[i : i + size]):x}\r\n".encode() + body[i : i + size] + b"\r\n" for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


FRAMING = [
    "chunked body above the cap, no Content-Length",
    "Content-Length shorter than the body sent",
    "Transfer-Encoding gzip, chunked",
    "Content-Length and Transfer-Encoding both",
]


@pytest.mark.parametrize("case", FRAMING)
async def test_body_framing_attack(case: str, world: World, tmp_path: Path, sheets, fault_ledger) -> None:
    async with gateway_for(world, tmp_path / "c.db", limits=LimitsConfig(max_body_bytes=64 * 1024)) as gw:
        key = world.tablets["TAB-0001"]
        honest = world.batch("TAB-0001", 1, sheets("TAB-0001", 1))
        url = f"{gw.url}/v1/batches"
        before = store_state(gw.db_path)
        if case.startswith("chunked"):
            big = honest + b"\0" * (256 * 1024)
            raw = _head(gw, sign("POST", url, key, big, BATCH), "Transfer-Encoding: chunked") + _chunked(big)
            expected: tuple[int, str | None] = (413, "oversize")
        elif case.startswith("Content-Length shorter"):
            # the tail is parsed as a second request; the parser's 400 ends the connection, nothing is stored
            raw = _head(gw, sign("POST", url, key, honest, BATCH), f"Content-Length: {len(honest) - 100}") + honest
            expected = (400, None)
        elif case.startswith("Transfer-Encoding gzip"):
            packed = gzip.compress(honest)
            raw = _head(gw, sign("POST", url, key, packed, BATCH), "Transfer-Encoding: gzip, chunked") + _chunked(
                packed
            )
            expected = (400, None)
        else:
            raw = _head(
                gw,
                sign("POST", url, key, honest, BATCH),
                f"Content-Length: {len(honest)}\r\nTransfer-Encoding: chunked",
            ) + _chunked(honest)
            expected = (400, None)
        answer = await _raw_exchange(gw, raw)
        after = store_state(gw.db_path)
    status, code = _status_and_code(answer)
    fault_ledger.add(inputs=1, forgeries_tried=1, forgeries=int(status == 200), crashes=int(status >= 500))
    assert status == expected[0], answer[:300]
    if expected[1] is not None:
        assert code == expected[1], answer[:300]
    assert after == before


HEADER_BOMBS = [
    ("one 100 KB header line", lambda: {"X-Pad": "a" * 100_000}),
    ("Signature sent as 300 lines", lambda: {f"X-Pad-{i}": "b" * 100 for i in range(300)}),
]


@pytest.mark.parametrize("make", [h[1] for h in HEADER_BOMBS], ids=[h[0] for h in HEADER_BOMBS])
async def test_header_bombs_are_refused_before_any_work(
    make: Callable[[], dict[str, str]], world: World, tmp_path: Path, sheets, fault_ledger
) -> None:
    async with gateway_for(world, tmp_path / "c.db") as gw:
        honest = world.batch("TAB-0001", 1, sheets("TAB-0001", 1))
        url = f"{gw.url}/v1/batches"
        headers = {**sign("POST", url, world.tablets["TAB-0001"], honest, BATCH), **make()}
        before = store_state(gw.db_path)
        answer = await _raw_exchange(gw, _head(gw, headers, f"Content-Length: {len(honest)}") + honest)
        after = store_state(gw.db_path)
    status, _ = _status_and_code(answer)
    fault_ledger.add(inputs=1, forgeries_tried=1, forgeries=int(status == 200), crashes=int(status >= 500))
    assert status in (400, 413, 431), answer[:200]
    assert after == before


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _gib_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(16 << 20)
    body = b"".join(packer.compress(zeros) for _ in range(64)) + packer.flush()
    assert len(body) < 2 * 1024 * 1024  # under the 4 MiB body cap: the cap is not what stops it
    return body


async def _bomb_the_process(tmp_path: Path, make_bed, fault_ledger, n: int) -> tuple[list[int], float, float]:
    """``n`` unauthenticated 1 GiB gzip bombs, each on its own connection, then one honest request on each
    connection (so the server must have dealt with the bomb's body); returns statuses, MiB and CPU s spent."""
    world = World.make()
    gp = await make_bed(world, tmp_path / "gw").start()
    body = _gib_bomb()
    url = f"{gp.url}/v1/batches"
    mem0, cpu0 = _vm_hwm_kib(gp.pid), _cpu_seconds(gp.pid)

    async def one() -> list[int]:
        async with aiohttp.ClientSession() as session:
            bomb = await send(session, "POST", url, {"Content-Type": BATCH, "Content-Encoding": "gzip"}, body)
            health = await send(session, "GET", f"{gp.url}/healthz", {})
            return [bomb.status, health.status]

    statuses = [s for pair in await asyncio.gather(*(one() for _ in range(n))) for s in pair]
    grown_mib = (_vm_hwm_kib(gp.pid) - mem0) / 1024
    cpu = _cpu_seconds(gp.pid) - cpu0
    assert await gp.kill() == -9
    fault_ledger.add(inputs=n, forgeries_tried=n, forgeries=statuses[::2].count(200),  # the bombs' answers
                     crashes=sum(s >= 500 for s in statuses))
    return statuses, grown_mib, cpu


async def test_gzip_bombs_do_not_grow_the_real_process(tmp_path: Path, fault_ledger, make_bed) -> None:
    statuses, grown_mib, _ = await _bomb_the_process(tmp_path, make_bed, fault_ledger, 2)
    assert statuses == [415, 200] * 2
    assert grown_mib < 32, f"peak memory grew by {grown_mib:.0f} MiB"


async def test_gzip_bombs_cost_the_gateway_no_inflation_cpu(tmp_path: Path, fault_ledger, make_bed) -> None:
    statuses, _, cpu = await _bomb_the_process(tmp_path, make_bed, fault_ledger, 2)
    assert statuses == [415, 200] * 2
    assert cpu < 0.5, f"the gateway spent {cpu:.1f} s of CPU on two refused bodies"


# ---- slowloris and floods against the real process ----------------------------------------------------


class Slowloris:
    """``n`` connections that send a request head one byte per round and never finish it."""

    def __init__(self, url: str, n: int) -> None:
        self.authority = url.removeprefix("http://")
        self.n = n
        self.writers: list[asyncio.StreamWriter] = []
        self.bytes_sent = 0
        self.dropped = 0

    async def open(self) -> None:
        host, port = self.authority.split(":")
        for _ in range(self.n):
            _, writer = await asyncio.open_connection(host, int(port))
            self.writers.append(writer)

    async def trickle(self, stop: asyncio.Event) -> None:
        head = f"POST /v1/batches HTTP/1.1\r\nHost: {self.authority}\r\n".encode()
        pad = b"X-Slow: a\r\n"
        offset = 0
        while not stop.is_set():
            stream = head + pad * (1 + offset // len(pad))
            byte = stream[offset : offset + 1]
            offset += 1
            for writer in list(self.writers):
                try:
                    writer.write(byte)
                    await writer.drain()
                    self.bytes_sent += 1
                except ConnectionError:
                    self.writers.remove(writer)
                    self.dropped += 1
            await asyncio.sleep(0)  # a round done: let everyone else run (a yield, not a delay)

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def flood(url: str, stop: asyncio.Event, counts: dict[int, int]) -> None:
    """Unauthenticated and junk-signed requests as fast as one connection pool allows."""
    junk = b"SNQB\x01" + b"\0" * 200
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as s:

        async def one(i: int) -> None:
            headers = {"Content-Type": BATCH}
            if i % 2:
                headers |= {"Signature-Input": 'sanaq=("@method");created=1', "Signature": "sanaq=:AAAA:"}
            async with s.post(f"{url}/v1/batches", data=junk, headers=headers) as r:
                await r.read()
                counts[r.status] = counts.get(r.status, 0) + 1

        i = 0
        while not stop.is_set():
            await asyncio.gather(*(one(i + k) for k in range(32)))
            i += 32


async def test_slowloris_and_flood_do_not_starve_enrolled_tablets(
    tmp_path: Path, sheets, fault_ledger, make_bed
) -> None:
    world = World.make(n_tablets=4, n_stations=1)
    bed = make_bed(world, tmp_path / "gw")
    gp = await bed.start()
    slow = Slowloris(gp.url, 300)
    await slow.open()
    stop = asyncio.Event()
    flood_counts: dict[int, int] = {}
    envelopes = fleet_envelopes(world, 10, sheets)
    book = ReceiptBook(tmp_path / "receipts.jsonl", world.gateway_keys)
    link = Link(gp.url)
    loads = [TabletLoad(d, world.tablets[d], envs, book, link) for d, envs in envelopes.items()]
    try:
        async with asyncio.TaskGroup() as tg:
            attack = [tg.create_task(slow.trickle(stop)), tg.create_task(flood(gp.url, stop, flood_counts))]
            async with aiohttp.ClientSession() as session, asyncio.timeout(120):
                await asyncio.gather(*(load.run(session) for load in loads))
            flooded_during = sum(flood_counts.values())
            stop.set()
            del attack
        still_open = len(slow.writers)
    finally:
        stop.set()
        await slow.close()
    code = await gp.terminate()
    with contextlib.closing(sqlite3.connect(bed.db_path)) as conn:
        stored = conn.execute("SELECT count(*) FROM batches").fetchone()[0]
    crashes = int(code != 0) + sum(v for k, v in flood_counts.items() if k >= 500) + bed.failed_requests_logged()
    fault_ledger.add(inputs=flooded_during + slow.bytes_sent + book.requests, faults=slow.n, crashes=crashes)
    assert len(book.receipts) == 40 and set(book.statuses) == {200}
    assert stored == 40
    assert flooded_during > 0 and set(flood_counts) <= {400, 401}, flood_counts
    assert still_open == 300, "the gateway dropped slow connections before their headers were finished"
    assert crashes == 0


async def test_a_request_head_never_finished_is_closed_after_the_idle_timeout(
    tmp_path: Path, fault_ledger, make_bed
) -> None:
    bed = make_bed(World.make(), tmp_path / "gw", server_toml="idle_timeout_s = 2")
    try:
        gp = await bed.start()
    except StartRefused as e:
        fault_ledger.add(inputs=1)
        raise AssertionError(f"server.idle_timeout_s is not an option: {e.stderr.strip()}") from e
    host, port = gp.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    await writer.drain()
    async with asyncio.timeout(30):
        tail = await reader.read()  # EOF (or a 408) once the server gives up on the head
    writer.close()
    await gp.terminate()
    fault_ledger.add(inputs=1, faults=1)
    assert tail == b"" or tail.startswith(b"HTTP/1.1 408")


# ---- slow request bodies against the real process (issue 13, finding 2) --------------------------------


class SlowBodies:
    """``n`` connections, each a batch request head with a 4 MiB ``Content-Length`` and then one body byte
    every ``interval_s``; a connection the server answers or closes is opened again at once (the attacker
    keeps up the pressure). No key needed: the body comes before any signature check."""

    def __init__(self, url: str, n: int, interval_s: float) -> None:
        self.authority = url.removeprefix("http://")
        self.n = n
        self.interval_s = interval_s
        self.opened = 0
        self.bytes_sent = 0
        self.answers: dict[int, int] = {}  # status -> count of answers the server gave a slow body
        self.closed_silently = 0
        self.heads_sent = asyncio.Event()
        self._first_heads = 0

    def _head(self) -> bytes:
        return (
            f"POST /v1/batches HTTP/1.1\r\nHost: {self.authority}\r\nContent-Type: {BATCH}\r\n"
            f"Content-Length: {4 * 1024 * 1024}\r\n\r\n"
        ).encode()

    async def hold(self, stop: asyncio.Event) -> None:
        host, port = self.authority.split(":")
        first = True
        while not stop.is_set():
            reader, writer = await asyncio.open_connection(host, int(port))
            self.opened += 1
            try:
                writer.write(self._head())
                await writer.drain()
                if first:
                    first = False
                    self._first_heads += 1
                    if self._first_heads == self.n:
                        self.heads_sent.set()
                while not stop.is_set():
                    writer.write(b"\0")
                    await writer.drain()
                    self.bytes_sent += 1
                    try:
                        async with asyncio.timeout(self.interval_s):  # the attack's pace; an answer ends the wait
                            raw = await reader.read(65536)
                    except TimeoutError:
                        continue
                    if raw.startswith(b"HTTP/1.1 "):
                        status = int(raw.split(b" ", 2)[1])
                        self.answers[status] = self.answers.get(status, 0) + 1
                    else:
                        self.closed_silently += 1
                    break
            except ConnectionError:
                self.closed_silently += 1
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


SLOW_BODY_ATTACKS = [
    pytest.param(520, 3.0, 12.0, id="520 connections, a byte every 3 s, 12 s"),
    pytest.param(1500, 5.0, 45.0, id="1500 connections, a byte every 5 s, 45 s", marks=pytest.mark.slow),
]
SERVED_WITHIN_S = 10.0  # every authentic batch is receipted this soon while the attack runs


@pytest.mark.parametrize(("connections", "interval_s", "duration_s"), SLOW_BODY_ATTACKS)
async def test_slow_bodies_do_not_starve_ingest(
    connections: int, interval_s: float, duration_s: float, tmp_path: Path, sheets, fault_ledger, make_bed
) -> None:
    """The attack of issue 13 on the default configuration (128 ingest slots): enrolled tablets keep being
    receipted, each within ``SERVED_WITHIN_S``; the slow bodies are cut by the body deadline (408); and the
    hang-ups at the end are no failure in the gateway's log."""
    world = World.make(n_tablets=4, n_stations=1)
    bed = make_bed(world, tmp_path / "gw")
    gp = await bed.start()
    attack = SlowBodies(gp.url, connections, interval_s)
    stop = asyncio.Event()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    healthz: list[int] = []
    loop = asyncio.get_running_loop()

    async def tablet(session: aiohttp.ClientSession, device_id: str, end: float) -> None:
        seq = 0
        while loop.time() < end:
            seq += 1
            envelope = world.batch(device_id, seq, sheets(device_id, seq))
            started = loop.time()
            try:
                async with asyncio.timeout(SERVED_WITHIN_S):
                    answer = await post_envelope(session, gp.url, envelope, world.tablets[device_id])
            except TimeoutError:
                statuses[0] = statuses.get(0, 0) + 1  # 0: no answer within the stated time
                return
            latencies.append(loop.time() - started)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if answer.status != 200:
                return

    try:
        async with asyncio.TaskGroup() as tg:
            holders = [tg.create_task(attack.hold(stop)) for _ in range(connections)]
            async with asyncio.timeout(60):
                await attack.heads_sent.wait()
            started = loop.time()
            async with aiohttp.ClientSession() as session:
                # first a full round of trickled bytes: on b916ae2 every ingest slot is taken by then
                await until(lambda: attack.bytes_sent >= connections, timeout_s=60, what="a byte on every connection")
                end = started + duration_s
                await asyncio.gather(*(tablet(session, d, end) for d in world.tablets))
                async with session.get(f"{gp.url}/healthz") as r:
                    healthz.append(r.status)
            stop.set()  # every attacker hangs up now, mid-body
            del holders
        counted = await _wait_for_log(bed, "request.body.abandoned", 1)
    finally:
        stop.set()
    code = await gp.terminate()
    log_lines = bed.log_path.read_text(errors="replace").splitlines()
    errors = [line for line in log_lines if '"level": "error"' in line or '"level": "critical"' in line]
    crashes = int(code != 0) + bed.failed_requests_logged() + statuses.get(500, 0)
    fault_ledger.add(inputs=attack.opened + len(latencies), faults=attack.opened, crashes=crashes)
    assert statuses.get(0, 0) == 0, f"a tablet got no answer within {SERVED_WITHIN_S} s: {statuses}"
    assert set(statuses) == {200} and len(latencies) >= 4 * 2, statuses
    assert max(latencies) < SERVED_WITHIN_S
    assert healthz == [200]
    assert attack.answers.get(408, 0) > 0, (attack.answers, attack.closed_silently)  # the deadline cut them
    assert counted > 0
    assert crashes == 0 and not errors, errors[:3]


async def _wait_for_log(bed: GatewayBed, event: str, at_least: int) -> int:
    """Poll the process's log file until ``event`` appears ``at_least`` times (10 s deadline); return the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        count = bed.log_path.read_text(errors="replace").count(f'"event": "{event}"')
        if count >= at_least or loop.time() > deadline:
            return count
        await asyncio.sleep(0.1)
