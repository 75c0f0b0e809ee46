"""Test bed for the tablet sync tests (no tests here).

* ``GatewayBed``: the real gateway (``gateway.server.build_server``, the production factory, over a real SQLite
  file) on 127.0.0.1, restartable on the same port so "the gateway is down"
  is a refused connection and "it is back" is the same URL;
* ``LossyProxy``: a TCP proxy that forwards a batch upload to the gateway and
  cuts the connection the moment the gateway answers, so the batch is
  committed but the tablet never sees the receipt;
* ``Mitm``: an HTTP man in the middle that forwards requests unchanged (Host
  included, so request signatures still verify) and rewrites batch answers;
* ``Sleeps``: the engine's injected sleep, recording each back-off instead of
  waiting (and optionally acting, e.g. bringing the gateway back).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from gateway.config import GatewayConfig, LimitsConfig, ServerConfig
from gateway.context import CTX, GatewayContext
from gateway.server import build_server
from gateway.staff.config import StaffConfig
from gateway.store_sqlite import SqliteStore
from keys import Authority, enroll_tablet, tls
from tablet.client import SyncEngine
from tablet.fleet import publish_registry
from tablet.generator import generate_sheets
from tablet.identity import TabletIdentity
from tablet.outbox import Outbox
from tablet.outbox_worker import OutboxWorker
from tablet.sync_policy import RetryPolicy, SyncConfig
from tests.gateway.harness import World, now_ms

__all__ = [
    "GatewayBed", "LossyProxy", "Mitm", "Sleeps", "engine_for", "enroll", "fill_and_pack", "push_registry",
    "world_identity",
]


@dataclass
class GatewayBed:
    db_path: Path
    data_key: PrivateKey
    receipt_key: SigningKey
    root_public_key: bytes
    snapshot: bytes
    ssl_cert: tuple[Path, Path] | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    port: int = 0
    runner: web.AppRunner | None = None
    staff: StaffConfig | None = None  # mount the staff dashboard (it holds the lists assignments come from)

    @classmethod
    def of_world(cls, world: World, db_path: Path, *, receipt_key: SigningKey | None = None) -> GatewayBed:
        return cls(db_path, world.data, receipt_key or world.receipt, bytes(world.root.verify_key), world.snapshot())

    @classmethod
    def of_authority(cls, authority: Authority, db_path: Path, *, use_tls: bool = True) -> GatewayBed:
        snapshot = authority.latest_snapshot()
        assert snapshot is not None
        cert = (authority.tls_cert_path, authority.tls_key_path) if use_tls else None
        return cls(db_path, authority.data_private_key(), authority.gateway_signing_key(), authority.root_public_key,
                   snapshot, cert)

    async def start(self) -> GatewayBed:
        config = GatewayConfig(database=f"sqlite:///{self.db_path}",
                               server=ServerConfig(plain_http=True, port=self.port), limits=self.limits,
                               staff=self.staff if self.staff is not None else StaffConfig(enabled=False))
        server = build_server(config, SqliteStore(self.db_path), data_key=self.data_key, receipt_key=self.receipt_key,
                              root_public_key=self.root_public_key, bootstrap_snapshot=self.snapshot)
        await server.start(ssl_context=tls.server_ssl_context(*self.ssl_cert) if self.ssl_cert else None)
        self.runner = server.runner
        self.port = server.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_cert else 'http'}://127.0.0.1:{self.port}"

    @property
    def ctx(self) -> GatewayContext:
        assert self.runner is not None
        return self.runner.app[CTX]

    def stored(self, device_id: str | None = None) -> dict[tuple[str, int], tuple[bytes, bytes]]:
        """(device, seq) -> (batch hash, receipt) as the census store holds them."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            rows = db.execute("SELECT device_id, seq, batch_hash, receipt FROM batches").fetchall()
        return {(d, s): (bytes(h), bytes(r)) for d, s, h, r in rows if device_id in (None, d)}


def world_identity(world: World, device_id: str = "TAB-0001", *, key: SigningKey | None = None) -> TabletIdentity:
    return TabletIdentity(
        device_id=device_id, signing_key=key or world.tablets[device_id], data_public_key=world.data_public,
        usb_serial=f"SER{device_id}", gateway_keys=(bytes(world.receipt.verify_key),), worker_id=f"W{device_id[-4:]}",
    )


def fill_and_pack(path: Path, identity: TabletIdentity, sheets: int, *, per_batch: int = 5, seed: int = 3,
                  start: int = 0, pack: bool = True) -> int:
    """Queue generated sheets (and seal them); returns the outbox's next seq."""
    with Outbox.open(path, device_id=identity.device_id, now_ms=now_ms()) as outbox:
        outbox.add_sheets(generate_sheets(seed, sheets, device_id=identity.device_id, start=start), now_ms=now_ms())
        if pack:
            outbox.pack(now_ms=now_ms(), device_key=identity.signing_key, data_public_key=identity.data_public_key,
                        max_per_batch=per_batch)
        return outbox.stats().next_seq


class Sleeps:
    """Injected sleep: records the delay, runs ``action(n)`` on the n-th call (1-based), never waits."""

    def __init__(self, action: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.delays: list[float] = []
        self._action = action

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._action is not None:
            await self._action(len(self.delays))


@asynccontextmanager
async def engine_for(
    identity: TabletIdentity, outbox_path: Path, url: str, *, sleep: Sleeps | None = None,
    clock: Callable[[], int] = now_ms, max_attempts: int = 4, pack: bool = False, ca: Path | None = None,
) -> AsyncIterator[SyncEngine]:
    config = SyncConfig(gateway_url=url, ca_cert_path=ca, pack=pack, max_per_batch=5,
                        retry=RetryPolicy(max_attempts=max_attempts, base_s=0.5, cap_s=4.0))
    worker = await OutboxWorker.open(outbox_path, device_id=identity.device_id, now_ms=now_ms())
    async with worker, SyncEngine(identity, worker, config, sleep=sleep or Sleeps(), clock=clock,
                                  rng=random.Random(7)) as engine:
        yield engine


@dataclass
class LossyProxy:
    """TCP proxy to 127.0.0.1:``upstream_port``; the next ``drop_answers`` batch uploads lose their answer."""

    upstream_port: int
    drop_answers: int = 0
    dropped: int = 0
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers |= {writer, up_writer}
        armed = asyncio.Event()

        async def to_gateway() -> None:
            while data := await reader.read(65536):
                if self.drop_answers and data.startswith(b"POST /v1/batches"):
                    self.drop_answers -= 1
                    armed.set()
                up_writer.write(data)
                await up_writer.drain()

        async def to_tablet() -> None:
            while data := await up_reader.read(65536):
                if armed.is_set():  # the gateway answered: it has committed; the tablet never hears it
                    self.dropped += 1
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(_quietly(to_gateway()), _quietly(to_tablet()))
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
                self.writers.discard(w)


async def _quietly(pump: Awaitable[None]) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        await pump


Rewrite = Callable[[int, bytes], bytes]  # (index of the batch answer, body) -> body the tablet gets


@dataclass
class Mitm:
    """HTTP proxy in front of ``upstream`` that passes ``POST /v1/batches`` answers through ``rewrite``."""

    upstream: str
    rewrite: Rewrite
    answers: int = 0
    runner: web.AppRunner | None = None
    session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        self.session = aiohttp.ClientSession()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self.runner is not None and self.session is not None
        await self.runner.cleanup()
        await self.session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection")}
        async with self.session.request(request.method, self.upstream + request.rel_url.raw_path, data=body,
                                        headers=headers, allow_redirects=False) as resp:
            data, status = await resp.read(), resp.status
            passed = {k: v for k, v in resp.headers.items() if k in ("Content-Type", "Retry-After")}
        if request.method == "POST" and request.path == "/v1/batches" and status == 200:
            data = self.rewrite(self.answers, data)
            self.answers += 1
        return web.Response(status=status, body=data, headers=passed)


def enroll(authority: Authority, out: Path, device_id: str, gateway_url: str, *,
           bundle_passphrase: bytes | None = None) -> Path:
    """A real provisioning bundle for ``device_id`` (``sanaq-keys enroll-tablet``); returns its directory."""
    enroll_tablet(authority, out, device_id=device_id, usb_serial=f"R58{device_id.upper()}", institution="BL-000042",
                  worker_id=f"rw-{device_id}", gateway_url=gateway_url, now_ms=now_ms(),
                  bundle_passphrase=bundle_passphrase)
    return out


async def push_registry(authority: Authority, bed: GatewayBed) -> int:
    """PUT the authority's latest snapshot to the gateway (what ``simulate`` and operators do)."""
    snapshot = authority.latest_snapshot()
    assert snapshot is not None
    ca = authority.ca_cert_path if bed.ssl_cert else None
    async with aiohttp.ClientSession() as session:
        return await publish_registry(session, SyncConfig(gateway_url=bed.url, ca_cert_path=ca), snapshot)
