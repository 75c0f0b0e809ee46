"""The sync engine: deliver the outbox to the gateway and close batches only against proof.

One pass (``SyncEngine.sync_once``):

1. **State.** GET the device's signed sync state. If the gateway holds seqs
   at or beyond this outbox's next seq, the tablet was re-provisioned: with no
   open batch of ours in that range the seq line jumps past the gateway's
   (``Outbox.advance_next_seq``; a seq is never reused); with open batches
   there, they are sent first (a duplicate answer proves they are ours, a
   conflict stops the pass for a person).
2. **Pack** pending sheets (``SyncConfig.pack``), after step 1 so new batches
   take seqs the gateway has not seen (when the gateway cannot be reached the
   sheets are sealed anyway and the pass ends: the USB road needs batches).
3. **First proof.** Until the outbox holds one receipt, sync states are not
   applied: a state carries no batch hashes, so it cannot tell our seq 3 from
   the seq 3 of an earlier outbox of this device. The lowest open batch is
   sent first; its receipt (hash-checked) anchors the seq line.
4. **Send** open batches in seq order, those the last state shows missing
   (gaps, beyond ``max_seq``) first; batches it shows held are left for the
   next state to cover, which saves uploading what the USB road delivered.
5. **State again**, apply it, then send whatever is still open (each answer is
   then a duplicate carrying the first arrival's receipt), and read the state
   once more for the record if anything was sent.
6. **Assignments** (when the engine has an ``assignments_home``): fetch the
   institution's list changed since the held version (one attempt; protocol
   section 10.1) and keep it (``tablet.assignments``). A document that does
   not verify is logged and not applied, and a gateway that serves no
   assignments is passed over: either way the held list stays as it is.

A batch is closed only by ``Outbox.mark_receipted`` with a receipt that
verified (``GatewayClient.post_batch``) or by ``Outbox.apply_sync_state``
with a verified state. A refusal that needs a person ends the pass with
``outcome="stopped"``; running out of retries ends it ``incomplete``.

``watch`` runs passes forever, ``watch_interval_s`` apart (with jitter), and
returns when ``request_stop`` is called (SIGTERM/SIGINT in the CLI) or a pass
stops for a person. Clock, monotonic time, randomness, nonces and sleeping
are parameters, so tests drive the engine without waiting.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog

from wire import Receipt, SyncState

from .assignments import AssignmentBook
from .errors import CoverageRefusedError, GatewayUnreachableError, ProofRefusedError, SyncError
from .gateway_client import GatewayClient, Interrupted, LinkStats
from .identity import TabletIdentity
from .outbox_schema import OutboxStats, StoredBatch
from .outbox_worker import OutboxWorker
from .sync_policy import SyncConfig
from .sync_report import StateSummary, StopReason, SyncReport
from .transport import gateway_ssl

__all__ = ["SyncEngine", "wall_clock_ms"]

log = structlog.get_logger("tablet.sync")

ReceiptSink = Callable[[Receipt, bool], None]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Tally:
    """Counters of one pass (engine-internal; frozen into a ``SyncReport`` at the end)."""

    stored: int = 0
    duplicates: int = 0
    covered: int = 0
    gap_fills: int = 0
    sheets_receipted: int = 0
    sheets_quarantined: int = 0
    packed: int = 0
    seq_advanced_to: int | None = None
    state: StateSummary | None = None
    latencies_ms: list[float] = field(default_factory=list)


class SyncEngine:
    """Use as ``async with SyncEngine(identity, outbox, config) as engine: await engine.sync_once()``.

    ``session``: share one ``aiohttp.ClientSession`` across engines (the fleet
    simulator does); otherwise the engine makes one and closes it.
    ``on_receipt(receipt, duplicate)`` sees every receipt after it closed its batch.
    """

    def __init__(
        self,
        identity: TabletIdentity,
        outbox: OutboxWorker,
        config: SyncConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        monotonic: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
        token: Callable[[int], bytes] = os.urandom,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_receipt: ReceiptSink | None = None,
        assignments_home: Path | None = None,
    ) -> None:
        if outbox.device_id != identity.device_id:
            raise ValueError("outbox and identity name different devices")
        self.identity = identity
        self._outbox = outbox
        self._config = config
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.SystemRandom()
        self._token = token
        self._sleep = sleep
        self._on_receipt = on_receipt
        self._assignments_home = assignments_home
        self.assignments: AssignmentBook | None = None
        self._stop = asyncio.Event()
        self._client: GatewayClient | None = None

    async def __aenter__(self) -> SyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def request_stop(self) -> None:
        """End ``watch`` / the current pass at the next wait or between batches (never mid-request)."""
        self._stop.set()

    @property
    def client(self) -> GatewayClient:
        if self._client is None:
            if self._session is None:
                ssl = gateway_ssl(self._config.gateway_url, self._config.ca_cert_path)
                connector = aiohttp.TCPConnector(limit=self._config.connections, ssl=ssl if ssl is not None else False)
                self._session = aiohttp.ClientSession(connector=connector)
            self._client = GatewayClient(
                device_id=self.identity.device_id, signing_key=self.identity.signing_key,
                gateway_keys=self.identity.gateway_key_map(), config=self._config, session=self._session,
                clock=self._clock, token=self._token, rng=self._rng, sleep=self._sleep, stop=self._stop,
            )
        return self._client

    # -- passes --------------------------------------------------------------------------------------------

    async def watch(self, on_pass: Callable[[SyncReport], None] | None = None) -> SyncReport:
        """Pass after pass until a stop is requested or a pass stops for a person; returns the last report."""
        while True:
            report = await self.sync_once()
            if on_pass is not None:
                on_pass(report)
            if report.outcome == "stopped" or self._stop.is_set():
                return report
            spread = self._config.watch_jitter
            delay = self._config.watch_interval_s * (1 + self._rng.uniform(-spread, spread))
            try:
                await self.client.wait(delay)
            except Interrupted:
                return report

    async def sync_once(self) -> SyncReport:
        client = self.client
        client.stats = LinkStats()
        tally = _Tally()
        started = self._monotonic()
        outcome, stop = "complete", None
        log.info("sync.pass.started", device_id=self.identity.device_id)
        try:
            await self._pass(tally)
            await self._assignments_phase()
        except Interrupted:
            outcome = "interrupted"
        except GatewayUnreachableError as e:
            outcome = "incomplete"
            log.warning("sync.pass.incomplete", device_id=self.identity.device_id, code=e.code)
        except SyncError as e:
            outcome, stop = "stopped", StopReason(e.code, e.message, e.facts.get("seq"), e.facts.get("status"))
            log.error("sync.stopped", device_id=self.identity.device_id, code=e.code, seq=stop.seq)
        stats = await self._stats()
        if outcome == "complete" and stats.batches_sealed:
            outcome = "incomplete"
        report = SyncReport(
            device_id=self.identity.device_id, outcome=outcome, stored=tally.stored, duplicates=tally.duplicates,
            covered=tally.covered, gap_fills=tally.gap_fills, sheets_receipted=tally.sheets_receipted,
            sheets_quarantined=tally.sheets_quarantined, packed=tally.packed, retries=client.stats.retries,
            clock_corrections=client.stats.clock_corrections, clock_offset_ms=client.transport.offset_ms,
            seq_advanced_to=tally.seq_advanced_to, refusals=tuple(sorted(client.stats.refusals.items())),
            pending_after=stats.batches_sealed, state=tally.state, stop=stop,
            latencies_ms=tuple(tally.latencies_ms), duration_s=self._monotonic() - started,
        )
        log.info("sync.pass.finished", device_id=self.identity.device_id, outcome=outcome,
                 stored=report.stored, duplicates=report.duplicates, covered=report.covered,
                 pending=report.pending_after, retries=report.retries)
        return report

    async def _pass(self, tally: _Tally) -> None:
        try:
            state = await self._state_phase(tally)
        except GatewayUnreachableError:
            if self._config.pack:  # offline: seal anyway, sealed batches are what the USB road carries
                await self._pack(tally)
            raise
        if self._config.pack:
            await self._pack(tally)
        stats = await self._stats()
        if stats.batches_receipted == 0 and stats.batches_sealed:
            pending = await self._pending()
            await self._send(pending[0], tally, state)
            if state.max_seq:  # the gateway holds something of ours the state may now cover
                state = await self._state_phase(tally)
        pending = await self._pending()
        held = _held_by(state)
        for batch in [b for b in pending if not held(b.seq)]:
            await self._send(batch, tally, state)
        if pending:
            state = await self._state_phase(tally)
        rest = await self._pending()
        for batch in rest:
            await self._send(batch, tally, state)
        if rest:
            await self._state_phase(tally)

    # -- steps ---------------------------------------------------------------------------------------------

    async def _stats(self) -> OutboxStats:
        return await self._outbox.run(lambda o: o.stats())

    async def _pending(self) -> list[StoredBatch]:
        return await self._outbox.run(lambda o: o.pending_batches())

    def _now(self) -> int:
        return self.client.transport.now_ms()

    async def _state_phase(self, tally: _Tally) -> SyncState:
        state = await self.client.get_state()
        tally.state = StateSummary(state.highest_contiguous, state.max_seq, state.gaps, state.issued_at_ms)
        stats = await self._stats()
        if state.max_seq >= stats.next_seq:
            if stats.batches_sealed:
                log.warning("sync.seq.diverged", device_id=self.identity.device_id, gateway_max_seq=state.max_seq,
                            next_seq=stats.next_seq)
                return state
            target = state.max_seq + 1
            tally.seq_advanced_to = await self._outbox.run(lambda o: o.advance_next_seq(
                target, now_ms=self._now(), reason="gateway holds seqs this outbox never sealed"))
        if stats.batches_receipted == 0:
            return state  # first proof comes from a receipt, see the module docstring
        try:
            coverage = await self._outbox.run(lambda o: o.apply_sync_state(state, now_ms=self._now()))
        except CoverageRefusedError as e:
            raise ProofRefusedError(str(e), code="state-refused") from e
        tally.covered += len(coverage.covered)
        return state

    async def _assignments_phase(self) -> None:
        if self._assignments_home is None:
            return
        book = await asyncio.to_thread(AssignmentBook.load, self._assignments_home)
        try:
            doc = await self.client.get_assignments(book.version if book.institution else 0)
        except ProofRefusedError as e:  # assignments only advise: keep the held list, deliver anyway
            log.warning("sync.assignments.refused", device_id=self.identity.device_id, code=e.code, error=e.message)
            self.assignments = book
            return
        if doc is not None:
            outcome = await asyncio.to_thread(book.apply, doc, now_ms=self._now())
            if outcome == "stale":
                doc = await self.client.get_assignments(0)
                outcome = "stale" if doc is None else await asyncio.to_thread(book.apply, doc, now_ms=self._now())
            if outcome == "rollback":
                log.warning("sync.assignments.rollback", device_id=self.identity.device_id, held=book.version)
            log.info("sync.assignments.applied", device_id=self.identity.device_id, outcome=outcome,
                     version=book.version, entries=len(book.entries))
        self.assignments = book

    async def _pack(self, tally: _Tally) -> None:
        stats = await self._stats()
        if not stats.sheets_pending:
            return
        ident, cfg = self.identity, self._config
        made = await self._outbox.run(lambda o: o.pack(
            now_ms=self._now(), device_key=ident.signing_key, data_public_key=ident.data_public_key,
            max_per_batch=cfg.max_per_batch, max_batch_bytes=cfg.max_batch_bytes))
        tally.packed += len(made)

    async def _send(self, batch: StoredBatch, tally: _Tally, state: SyncState | None) -> None:
        if self._stop.is_set():
            raise Interrupted
        started = self._monotonic()
        receipt, duplicate = await self.client.post_batch(batch)
        try:
            await self._outbox.run(lambda o: o.mark_receipted(receipt, now_ms=self._now()))
        except CoverageRefusedError as e:
            raise ProofRefusedError(str(e), code="receipt-mismatch", seq=batch.seq) from e
        tally.latencies_ms.append((self._monotonic() - started) * 1000)
        if duplicate:
            tally.duplicates += 1
        else:
            tally.stored += 1
        if state is not None and any(a <= batch.seq <= b for a, b in state.gaps):
            tally.gap_fills += 1
        tally.sheets_receipted += receipt.sheets_accepted + receipt.sheets_quarantined
        tally.sheets_quarantined += receipt.sheets_quarantined
        log.info("sync.batch.receipted", device_id=self.identity.device_id, seq=batch.seq, duplicate=duplicate,
                 road=receipt.road, received_at_ms=receipt.received_at_ms)
        if self._on_receipt is not None:
            self._on_receipt(receipt, duplicate)


def _held_by(state: SyncState | None) -> Callable[[int], bool]:
    """Seqs the state shows the gateway holding (at most ``max_seq`` and in no gap)."""
    if state is None:
        return lambda seq: False
    gaps = state.gaps
    return lambda seq: seq <= state.max_seq and not any(a <= seq <= b for a, b in gaps)
