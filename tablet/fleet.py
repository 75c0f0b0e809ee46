"""The fleet simulator: N tablets with their own identities fill, seal and sync against one gateway.

``simulate_fleet`` is what ``sanaq-tablet simulate``, the demo, the
benchmarks and the fault tests call:

1. **Registry.** N tablets ``<fleet_id>-00001`` ... are enrolled in the
   authority's registry (fresh Ed25519 keys, held in memory), one snapshot is
   published and PUT to the gateway (``PUT /v1/registry``; the root signature
   is the authorisation).
2. **Fill.** Each tablet gets its own outbox (``WORKDIR/<device>.outbox.db``)
   and M generated sheets (``generate_sheets(seed, M, device_id=...)``), sealed
   into batches of at most ``max_per_batch``.
3. **Sync.** All tablets run ``SyncEngine.sync_once`` concurrently (at most
   ``concurrency`` at a time) over one shared HTTP session whose connector
   holds at most ``connections`` connections. Only this phase is timed.

Every verified receipt can be appended to a JSON-lines file
(``receipts_out``): the fault tests keep their evidence outside the system
under test and check the census store against it afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import aiohttp
import structlog
from nacl.signing import SigningKey

from keys import Authority
from wire import Receipt

from .client import SyncEngine, wall_clock_ms
from .fleet_report import FleetReport, summarize
from .gateway_client import GatewayClient
from .generator import DEFAULT_MIX, KindMix, generate_sheets
from .identity import TabletIdentity
from .outbox_worker import OutboxWorker
from .sync_policy import SyncConfig
from .sync_report import SyncReport
from .transport import gateway_ssl

__all__ = ["FleetConfig", "FleetReport", "enroll_fleet", "publish_registry", "simulate_fleet"]

log = structlog.get_logger("tablet.fleet")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """``sync`` carries the gateway URL, the CA to pin and the retry policy; ``pack`` in it is ignored."""

    sync: SyncConfig
    tablets: int = 5
    sheets_per_tablet: int = 20
    max_per_batch: int = 10
    seed: int = 1
    fleet_id: str = field(default_factory=lambda: f"sim-{secrets.token_hex(3)}")
    mix: KindMix = DEFAULT_MIX
    concurrency: int = 0  # tablets syncing at once; 0 = all
    connections: int = 64
    institution: str = "SIM-000001"
    put_registry: bool = True

    def __post_init__(self) -> None:
        if self.tablets < 1 or self.sheets_per_tablet < 0 or self.connections < 1 or self.concurrency < 0:
            raise ValueError("tablets >= 1, sheets_per_tablet >= 0, connections >= 1, concurrency >= 0")

    def device_id(self, index: int) -> str:
        return f"{self.fleet_id}-{index:05d}"


def enroll_fleet(authority: Authority, config: FleetConfig, *, now_ms: int) -> tuple[list[TabletIdentity], bytes]:
    """Enroll the fleet's tablets and publish one snapshot; returns their identities and the snapshot."""
    identities = []
    gateway_keys = (authority.gateway_public_key,)
    for i in range(1, config.tablets + 1):
        device_id = config.device_id(i)
        key = SigningKey.generate()
        worker_id = f"rw-{device_id}"
        authority.registry.enroll_tablet(
            device_id=device_id, public_key=bytes(key.verify_key), usb_serial=f"SIM{device_id.upper()}",
            institution=config.institution, worker_id=worker_id, now_ms=now_ms, act_no=f"sim/{config.fleet_id}",
        )
        identities.append(TabletIdentity(
            device_id=device_id, signing_key=key, data_public_key=authority.data_public_key,
            usb_serial=f"SIM{device_id.upper()}", gateway_keys=gateway_keys, worker_id=worker_id,
            institution=config.institution, gateway_url=config.sync.gateway_url,
            ca_cert_path=authority.ca_cert_path, root_public_key=authority.root_public_key,
        ))
    snapshot = authority.publish(now_ms=now_ms)
    log.info("fleet.enrolled", fleet_id=config.fleet_id, tablets=len(identities))
    return identities, snapshot


async def publish_registry(session: aiohttp.ClientSession, sync: SyncConfig, snapshot: bytes) -> int:
    """PUT a root-signed snapshot to the gateway; returns the version it now holds (``SyncError`` if refused)."""
    client = GatewayClient(
        device_id="registry", signing_key=SigningKey(bytes(32)), gateway_keys={}, config=sync, session=session,
        clock=wall_clock_ms, token=os.urandom, rng=random.SystemRandom(),
    )
    return await client.put_registry(snapshot)


async def _fill(worker: OutboxWorker, identity: TabletIdentity, config: FleetConfig, now_ms: int) -> int:
    sheets = generate_sheets(config.seed, config.sheets_per_tablet, device_id=identity.device_id, mix=config.mix,
                             worker_id=identity.worker_id)

    def fill(outbox: Any) -> int:
        outbox.add_sheets(sheets, now_ms=now_ms)
        return len(outbox.pack(now_ms=now_ms, device_key=identity.signing_key,
                               data_public_key=identity.data_public_key, max_per_batch=config.max_per_batch))

    return await worker.run(fill)


@contextlib.contextmanager
def _receipt_log(path: Path | None) -> Iterator[Callable[[Receipt, bool], None] | None]:
    if path is None:
        yield None
        return
    fh: IO[str]
    with open(path, "a", encoding="utf-8") as fh:

        def write(receipt: Receipt, duplicate: bool) -> None:
            fh.write(json.dumps({
                "device_id": receipt.device_id, "seq": receipt.seq, "batch_hash": receipt.batch_hash.hex(),
                "received_at_ms": receipt.received_at_ms, "road": receipt.road, "duplicate": duplicate,
                "sheets_accepted": receipt.sheets_accepted, "sheets_quarantined": receipt.sheets_quarantined,
                "receipt": base64.b64encode(receipt.raw).decode("ascii"),
            }, sort_keys=True) + "\n")

        try:
            yield write
        finally:
            fh.flush()
            os.fsync(fh.fileno())


async def simulate_fleet(
    authority: Authority,
    config: FleetConfig,
    workdir: str | os.PathLike[str],
    *,
    receipts_out: str | os.PathLike[str] | None = None,
    session: aiohttp.ClientSession | None = None,
    clock: Callable[[], int] = wall_clock_ms,
) -> FleetReport:
    """Enroll, fill, and sync a fleet; returns the summary. The gateway must trust ``authority``'s root."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    now = clock()
    # in this thread: the authority's registry connection is bound to the thread that opened it
    identities, snapshot = enroll_fleet(authority, config, now_ms=now)
    sync = replace(config.sync, pack=False)
    owned = session is None
    if session is None:
        ssl = gateway_ssl(sync.gateway_url, sync.ca_cert_path)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.connections, ssl=ssl if ssl is not None else False))
    workers: list[OutboxWorker] = []
    try:
        version = await publish_registry(session, sync, snapshot) if config.put_registry else None
        for ident in identities:
            workers.append(await OutboxWorker.open(workdir / f"{ident.device_id}.outbox.db",
                                                   device_id=ident.device_id, now_ms=now))
        sealed = sum(await asyncio.gather(*(_fill(w, i, config, now) for w, i in zip(
            workers, identities, strict=True))))
        reports, seconds = await _sync_all(identities, workers, sync, session=session, config=config,
                                           receipts_out=receipts_out, clock=clock)
    finally:
        for w in workers:
            await w.close()
        if owned:
            await session.close()
    report = summarize(reports, tablets=len(identities), sheets=config.sheets_per_tablet * len(identities),
                       batches_sealed=sealed, sync_seconds=seconds, registry_version=version,
                       fleet_id=config.fleet_id)
    log.info("fleet.synced", fleet_id=config.fleet_id, tablets=report.tablets,
             receipts=report.receipts_verified, seconds=round(seconds, 3))
    return report


async def _sync_all(
    identities: list[TabletIdentity], workers: list[OutboxWorker], sync: SyncConfig, *,
    session: aiohttp.ClientSession, config: FleetConfig, receipts_out: str | os.PathLike[str] | None,
    clock: Callable[[], int],
) -> tuple[list[SyncReport], float]:
    limit = asyncio.Semaphore(config.concurrency or len(identities))
    loop = asyncio.get_running_loop()
    with _receipt_log(Path(receipts_out) if receipts_out is not None else None) as sink:

        async def one(ident: TabletIdentity, worker: OutboxWorker) -> SyncReport:
            async with limit, SyncEngine(ident, worker, sync, session=session, clock=clock,
                                         on_receipt=sink) as engine:
                return await engine.sync_once()

        started = loop.time()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(i, w)) for i, w in zip(identities, workers, strict=True)]
        seconds = loop.time() - started
    return [t.result() for t in tasks], seconds

