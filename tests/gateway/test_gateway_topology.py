"""The national deployment topology of docs/operations.md, on this machine with real processes on 127.0.0.1.

HAProxy runs ``docs/examples/haproxy.cfg`` (only the addresses, the name and the CA path changed) in front of two
``sanaq-gateway serve`` processes over TLS that HAProxy passes through: clients pin the census CA and
check the balancer's name, which the gateways' certificate carries. The gateways share one PostgreSQL
primary that streams synchronously to a standby made with ``pg_basebackup``; the ``database`` URL names
both hosts with ``target_session_attrs=read-write``.

One run goes through the whole story: a registry push through the balancer reaches both instances; the USB
station's and the web service's gateway clients forward through the balancer; tablets
sync through the balancer while one gateway is SIGKILLed; the primary is killed (the gateway answers 503
with ``Retry-After``); the standby is promoted by hand (``pg_ctl promote``) and ingest through the
balancer carries on. At the end every receipt any client holds is exactly one stored batch on the
promoted standby, and every batch is stored once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import re
import shutil
import signal
import ssl
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import psycopg
import pytest
from nacl.signing import SigningKey

from gwclient import SignedGatewayClient
from keys import tls
from keys.files import save_data_key, save_signing_key
from tablet.generator import generate_sheets
from usb_ingest.gateway_client import GatewayClient as StationClient
from wire import parse_receipt

from .balancer import HAPROXY_CFG, Balancer, free_port
from .harness import World, now_ms, seed, sign, until
from .pg_cluster import SUPERUSER, Cluster, start_cluster, stop_cluster

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = REPO / "docs" / "operations.md"
PUBLIC_NAME = "localhost"  # stands for gateway.census.internal: the name clients use and the certificate holds
BATCH = "application/vnd.sanaq.batch"
SNAP = "application/vnd.sanaq.snapshot"
TABLETS = 8
WEB_ID = "WEB-AST-01"
KILL_AFTER = 20  # acknowledged batches before gw1 is SIGKILLed


# ---- PostgreSQL: a primary of its own (it gets killed) and a streaming standby -------------------------------


def standby_of(primary: Cluster) -> Cluster:
    """``pg_basebackup -R`` of ``primary`` into a new directory, started as a synchronous standby."""
    root = Path(tempfile.mkdtemp(prefix="sanaq-pgs-"))
    if primary.run_as is not None:
        entry = pwd.getpwnam(primary.run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    standby = Cluster(root, primary.bin_dir, primary.run_as)
    done = primary.run(
        "pg_basebackup", "-h", str(primary.socket_dir), "-U", SUPERUSER, "-D", str(standby.data_dir),
        "-R", "-X", "stream", "--checkpoint=fast",
    )
    assert done.returncode == 0, done.stderr
    with (standby.data_dir / "postgresql.conf").open("a") as conf:
        conf.write(f"unix_socket_directories = '{root}'\n")
    with (standby.data_dir / "postgresql.auto.conf").open("a") as conf:  # the name the primary waits for
        conf.write(f"primary_conninfo = 'host={primary.socket_dir} user={SUPERUSER} application_name=standby'\n")
    done = standby.run("pg_ctl", "-D", str(standby.data_dir), "-l", str(root / "server.log"), "-w", "-t", "60", "start")
    assert done.returncode == 0, done.stderr + (root / "server.log").read_text(errors="replace")[-2000:]
    return standby


async def scalar(dsn: str, sql: str) -> object:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(sql)).fetchone()
        return None if row is None else row[0]


@pytest.fixture
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    primary = start_cluster()
    standby: Cluster | None = None
    try:
        standby = standby_of(primary)
        yield primary, standby
    finally:
        if standby is not None:
            stop_cluster(standby)
        stop_cluster(primary)


# ---- the gateways and the balancer -----------------------------------------------------------------------------


@dataclass
class Instance:
    name: str
    proc: asyncio.subprocess.Process
    port: int
    home: Path
    drain: asyncio.Task[None]

    def events(self) -> list[dict[str, object]]:
        lines = (self.home / "stdout.log").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


async def start_instance(world: World, tmp: Path, name: str, dsn: str, snapshot: bytes) -> Instance:
    home = tmp / name
    home.mkdir()
    save_data_key(home / "data.key", world.data)
    save_signing_key(home / "gateway.key", world.receipt)
    (home / "registry.snapshot").write_bytes(snapshot)
    for f in ("tls.crt", "tls.key"):
        shutil.copy(tmp / f, home / f)
    port = free_port()
    # one process per instance where the gateway can run several ([server] workers, ADR 0010)
    workers = "workers = 1\n"
    (home / "gateway.toml").write_text(
        f'database = "{dsn}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ninstance_id = "{name}"\n{workers}'
        'tls_cert = "tls.crt"\ntls_key = "tls.key"\n'
        f'[keys]\nroot_public_key = "{bytes(world.root.verify_key).hex()}"\n'
        'data_key = "data.key"\nreceipt_key = "gateway.key"\nbootstrap_snapshot = "registry.snapshot"\n'
        "[staff]\nenabled = false\n"
    )
    with (home / "stdout.log").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(home / "gateway.toml"),
            stdout=out, stderr=asyncio.subprocess.PIPE,
        )
    assert proc.stderr is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        seen.append(line)
        assert line, f"{name} exited before listening: {''.join(seen)[-2000:]}"
        if "listening" in line:
            break

    async def drain() -> None:
        assert proc.stderr is not None
        while await proc.stderr.readline():
            pass

    return Instance(name, proc, port, home, asyncio.create_task(drain()))


@dataclass
class Clients:
    """Tablets that sync through the balancer: every failure is retried with a fresh signature."""

    world: World
    url: str
    pinned: ssl.SSLContext
    receipts: list[tuple[str, int, bytes]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    retry_after_seen: list[str] = field(default_factory=list)

    async def deliver(self, session: aiohttp.ClientSession, device_id: str, seq: int, envelope: bytes) -> bytes:
        target = f"{self.url}/v1/batches"
        deadline = asyncio.get_running_loop().time() + 90
        while asyncio.get_running_loop().time() < deadline:
            try:
                headers = sign("POST", target, self.world.tablets[device_id], envelope, BATCH)
                async with session.post(target, data=envelope, headers=headers) as r:
                    answer = await r.json(content_type=None)
                    if r.status == 200:
                        raw = base64.b64decode(answer["receipt"])
                        assert answer["seq"] == seq
                        self.receipts.append((device_id, seq, raw))
                        return raw
                    assert r.status in (429, 503), (r.status, answer)  # never a conflict, replay or 500
                    self.failures[str(r.status)] += 1
                    if r.status == 503:
                        self.retry_after_seen.append(r.headers.get("Retry-After", ""))
            except (TimeoutError, aiohttp.ClientError) as e:
                self.failures[type(e).__name__] += 1
            await asyncio.sleep(0.05)  # a client's back-off, not a wait for the test's timing
        raise AssertionError(f"({device_id}, {seq}) never acknowledged")

    async def tablet(self, session: aiohttp.ClientSession, index: int, device_id: str, seqs: range) -> None:
        for seq in seqs:
            sheets = generate_sheets(index * 1000 + seq, 2, device_id=device_id)
            await self.deliver(session, device_id, seq, self.world.batch(device_id, seq, sheets))


async def registry_version(session: aiohttp.ClientSession, world: World, inst: Instance) -> str:
    """The registry version the instance serves, asked directly until it is 2 or 10 s have passed."""
    url = f"https://127.0.0.1:{inst.port}/v1/registry"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        async with session.get(url, headers=sign("GET", url, world.stations["ST-01"])) as r:
            assert r.status == 200
            version = r.headers["X-Sanaq-Registry-Version"]
        if version == "2" or loop.time() > deadline:
            return version
        await asyncio.sleep(0.05)


def session_for(pinned: ssl.SSLContext) -> aiohttp.ClientSession:
    # one connection per request: the balancer spreads new connections, not requests on a kept-alive one
    connector = aiohttp.TCPConnector(ssl=pinned, force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20))


def test_the_documented_balancer_config_is_the_one_in_the_guide() -> None:
    guide = OPERATIONS.read_text("utf-8")
    blocks = re.findall(r"^```haproxy\n(.*?)^```$", guide, flags=re.MULTILINE | re.DOTALL)
    assert blocks == [HAPROXY_CFG.read_text("utf-8")], "docs/operations.md must show docs/examples/haproxy.cfg"


async def test_national_topology_balancer_gateways_primary_and_standby(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    primary, standby = clusters
    async with await psycopg.AsyncConnection.connect(primary.dsn(), autocommit=True) as admin:
        await admin.execute("CREATE DATABASE census")
        await admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
        await admin.execute("SELECT pg_reload_conf()")

    async def standby_is_sync() -> bool:
        return await scalar(primary.dsn(), "SELECT sync_state FROM pg_stat_replication") == "sync"

    for _ in range(600):
        if await standby_is_sync():
            break
        await asyncio.sleep(0.05)
    assert await standby_is_sync(), "the standby never became synchronous"

    hosts = quote(f"{primary.socket_dir},{standby.socket_dir}", safe="")
    dsn = f"postgresql://{SUPERUSER}@/census?host={hosts}&target_session_attrs=read-write"
    gateway_dsn = f"{dsn}&pool_timeout_s=3"  # the pool option is the gateway's, not libpq's

    world = World.make(n_tablets=TABLETS + 1, n_stations=1)
    world.webs[WEB_ID] = SigningKey(seed("web-1"))
    carried = f"TAB-{TABLETS + 1:04d}"  # its batches reach the gateway on a USB station's road
    tablets = [d for d in world.tablets if d != carried]
    ca_key, ca_cert = tls.make_ca(now_ms=now_ms())
    key, cert = tls.make_server_cert(ca_key, ca_cert, [PUBLIC_NAME, "127.0.0.1"], now_ms=now_ms())
    tls.save_tls_key(tmp_path / "tls.key", key)
    tls.save_cert(tmp_path / "tls.crt", cert)
    tls.save_cert(tmp_path / "ca.crt", ca_cert)
    pinned = tls.client_ssl_context(tmp_path / "ca.crt")

    shared = world.snapshot(version=1)
    starts = (start_instance(world, tmp_path, n, gateway_dsn, shared) for n in ("gw1", "gw2"))
    instances = list(await asyncio.gather(*starts))
    lb: Balancer | None = None
    clients = Clients(world, "", pinned)
    try:
        lb = await Balancer.start(
            tmp_path, servers={i.name: i.port for i in instances}, ca_file=tmp_path / "ca.crt", name=PUBLIC_NAME
        )
        url = clients.url = f"https://{PUBLIC_NAME}:{lb.port}"
        async with session_for(pinned) as session:
            await lb.until_serving(session, f"{url}/readyz")

            # a registry push through the balancer (it reaches one instance) is followed by both
            v2 = world.snapshot(version=2)
            async with session.put(f"{url}/v1/registry", data=v2, headers={"Content-Type": SNAP}) as r:
                assert r.status == 200, await r.text()
            assert await scalar(dsn, "SELECT version FROM registry") == 2
            for inst in instances:
                assert await registry_version(session, world, inst) == "2", inst.name

            # a USB station's and the web service's gateway clients forward through the balancer too
            async with StationClient(url, world.stations["ST-01"], ssl_context=pinned) as station:
                for seq in (1, 2):
                    envelope = world.batch(carried, seq, generate_sheets(900 + seq, 2, device_id=carried))
                    answer = await station.post_batch(envelope)
                    assert answer.road == "station:ST-01" and not answer.duplicate
                    clients.receipts.append((carried, seq, answer.receipt))
                again = await station.post_batch(envelope)  # a resend after a lost answer
                assert again.duplicate and again.receipt == answer.receipt
            async with SignedGatewayClient(url, world.webs[WEB_ID], ssl_context=pinned) as web:
                answer = await web.post_batch(world.batch(WEB_ID, 1, generate_sheets(950, 1, device_id=WEB_ID)))
                assert answer.road == f"web:{WEB_ID}"
                clients.receipts.append((WEB_ID, 1, answer.receipt))
            roads = len(clients.receipts)

            # 1. tablets sync through the balancer; gw1 is SIGKILLed while they do
            async def killer() -> None:
                await until(lambda: len(clients.receipts) >= roads + KILL_AFTER, timeout_s=60, what="first acks")
                instances[0].proc.send_signal(signal.SIGKILL)

            kill = asyncio.create_task(killer())
            await asyncio.wait_for(
                asyncio.gather(*(clients.tablet(session, i, d, range(1, 9)) for i, d in enumerate(tablets))),
                120,
            )
            await kill
            assert await asyncio.wait_for(instances[0].proc.wait(), 10) == -signal.SIGKILL
            served = {i.name: sum(e["event"] == "batch.stored" for e in i.events()) for i in instances}
            assert served["gw1"] > 0 and served["gw2"] > 0, served  # the balancer spread the fleet
            phase1 = len(clients.receipts)
            interrupted = clients.failures.total()  # requests the SIGKILL cut (all retried)

            # every batch acknowledged so far is on the standby once it has replayed the primary's WAL
            standby_dsn = standby.dsn("census")
            lsn = await scalar(primary.dsn(), "SELECT pg_current_wal_lsn()::text")
            for _ in range(200):
                if await scalar(standby_dsn, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"):
                    break
                await asyncio.sleep(0.05)
            async with await psycopg.AsyncConnection.connect(standby_dsn) as conn:
                on_standby = set(await (await conn.execute("SELECT device_id, seq FROM batches")).fetchall())
            assert on_standby == {(d, s) for d, s, _ in clients.receipts}

            # 2. the primary dies: the gateway answers 503 with Retry-After and acknowledges nothing (asked
            # directly: the balancer's /readyz check takes it out a few seconds later)
            done = primary.run("pg_ctl", "-D", str(primary.data_dir), "-m", "immediate", "-w", "stop")
            assert done.returncode == 0, done.stderr
            device = tablets[0]
            envelope = world.batch(device, 9, generate_sheets(9, 2, device_id=device))
            target = f"https://127.0.0.1:{instances[1].port}/v1/batches"  # straight to the gateway
            async with session.post(
                target, data=envelope, headers=sign("POST", target, world.tablets[device], envelope, BATCH)
            ) as r:
                problem = await r.json(content_type=None)
                assert r.status == 503, (r.status, problem)
                assert problem["code"] == "unavailable" and int(r.headers["Retry-After"]) > 0

            # 3. the operator promotes the standby; ingest through the balancer continues on it
            # (the tablets keep trying meanwhile, and are told 503 until the promotion)
            seen_before = clients.failures.total()
            phase2 = asyncio.gather(*(clients.tablet(session, i, d, range(9, 13)) for i, d in enumerate(tablets)))
            # 503 from the gateway, or a closed connection once the balancer's /readyz check takes it out
            await until(lambda: clients.failures.total() >= seen_before + TABLETS, timeout_s=60, what="the outage")
            acked_in_outage = len(clients.receipts) - phase1
            promoted = await asyncio.to_thread(standby.run, "pg_ctl", "-D", str(standby.data_dir), "-w", "promote")
            assert promoted.returncode == 0, promoted.stderr
            await asyncio.wait_for(phase2, 120)
            assert acked_in_outage == 0
            assert len(clients.receipts) == phase1 + TABLETS * 4
    finally:
        if lb is not None:
            await lb.stop()
        for inst in instances:
            if inst.proc.returncode is None:
                inst.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(inst.proc.wait(), 30)
                except TimeoutError:
                    inst.proc.kill()
                    await inst.proc.wait()
            inst.drain.cancel()

    assert interrupted > 0, "the SIGKILL interrupted no client"
    assert lb is not None and "Server gateways/gw1 is DOWN" in lb.log()  # the health check took it out
    assert all(int(v) > 0 for v in clients.retry_after_seen)
    async with await psycopg.AsyncConnection.connect(standby.dsn("census")) as conn:
        rows = await (await conn.execute("SELECT device_id, seq, receipt FROM batches")).fetchall()
        sheets = (await (await conn.execute("SELECT count(*) FROM sheets")).fetchone() or [0])[0]
    stored: dict[tuple[str, int], bytes] = {}
    for device_id, seq, receipt in rows:
        assert (device_id, seq) not in stored, f"({device_id}, {seq}) stored twice"
        stored[(device_id, seq)] = bytes(receipt)
    assert len(stored) == TABLETS * 12 + 3 and sheets == TABLETS * 12 * 2 + 2 * 2 + 1
    for device_id, seq, receipt in clients.receipts:  # nothing acknowledged was lost in the failover
        assert stored[(device_id, seq)] == receipt, (device_id, seq)
        parsed = parse_receipt(receipt, world.gateway_keys)
        assert (parsed.device_id, parsed.seq) == (device_id, seq)
