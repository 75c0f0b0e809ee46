"""Send spooled batches and custody records to the gateway; a spool entry leaves only against a verified receipt.

Each round takes the pending entries in (device, seq) order, ``concurrency``
at a time, then the custody records. Outcomes per entry:

* **delivered** - 200 with a receipt that verifies under the snapshot's
  receipt keys and covers exactly this batch: logged to the receipt log, the
  entry removed (``Spool.complete``). A duplicate answer is the same.
* **transient** - network error, timeout, 5xx, 429, or a receipt that does
  not verify: the round stops and the forwarder backs off (doubling from
  ``initial_backoff_s`` to ``max_backoff_s``, jittered, at least the gateway's
  ``Retry-After``). Entries stay, so gateway outages of hours only delay.
* **blocked** - the gateway refuses the *station* (its key unknown or revoked,
  a wrong endpoint): nothing is rejected, the alarm is raised and the
  forwarder retries at ``max_backoff_s``. A 401/403 is ambiguous (the
  station's request signature or the tablet's batch), so a signed
  ``GET /v1/registry`` probe decides: refused too means the station.
* **deferred** - a refusal that can turn into acceptance by itself (the
  gateway's registry does not list the tablet yet, a digest garbled on the
  way): the entry stays, the round goes on, and the forwarder backs off.
* **rejected** - any other 4xx (malformed, conflict, oversize, tablet revoked,
  ...): the entry moves to ``spool/rejected/`` with the reason; it is never
  deleted and never retried on its own. A conflict is a security event.

Clock skew is corrected inside ``GatewayClient`` from the problem's
``server_time_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .config import ForwardConfig
from .errors import BadReceipt, GatewayRefused, GatewayUnreachable, SpoolError
from .gateway_client import GatewayClient, probe
from .spool import CustodyEntry, Spool, SpoolEntry
from .trust import StationTrust

__all__ = ["Forwarder", "RoundResult"]

log = structlog.get_logger("usb_ingest.forward")

# Refusals that can only mean this station or its setup is at fault (wrong URL, a bug, a registry mix-up).
_STATION_CODES = {"not-found", "method-not-allowed", "unsupported-media-type", "expired", "rollback"}
# Refusals that may become acceptance later without anything changing here: keep the entry, retry later.
_LATER_CODES = {"unknown-key", "digest-mismatch", "clock-skew", "replay"}


@dataclass(frozen=True, slots=True)
class RoundResult:
    kind: str  # "empty" | "progress" | "transient" | "blocked"
    delivered: int = 0
    rejected: int = 0
    retry_after_s: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str  # "delivered" | "rejected" | "deferred" | "transient" | "blocked"
    retry_after_s: float | None = None
    error: str | None = None


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        client: GatewayClient,
        trust: StationTrust,
        config: ForwardConfig,
        *,
        on_state: Callable[[str, int | None, str | None], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.client = client
        self.trust = trust
        self.config = config
        self._on_state = on_state or (lambda _s, _r, _e: None)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._wake = asyncio.Event()
        self._failures = 0
        self.delivered_total = 0

    def wake(self) -> None:
        """New entries were spooled (call from the event loop)."""
        self._wake.set()

    def _backoff(self, result: RoundResult) -> float:
        cfg = self.config
        if result.kind == "blocked":
            return cfg.max_backoff_s
        base = min(cfg.max_backoff_s, cfg.initial_backoff_s * 2.0 ** min(self._failures, 30))
        delay = base * (0.5 + self._rng.random() / 2)
        if result.retry_after_s is not None:
            delay = max(delay, result.retry_after_s)
        return min(delay, cfg.max_backoff_s)

    async def run(self) -> None:
        """Forward until cancelled."""
        while True:
            self._wake.clear()  # a wake during the round below is kept for the wait after it
            result = await self.forward_round()
            if result.kind in ("transient", "blocked"):
                self._failures += 1
                delay = self._backoff(result)
                retry_ms = time.time_ns() // 1_000_000 + int(delay * 1000)
                state = "blocked" if result.kind == "blocked" else "waiting"
                log.warning("usb.forward.retry_later", delay_s=round(delay, 2), reason=result.error, state=state)
                self._on_state(state, retry_ms, result.error)
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            if result.kind == "progress":
                continue
            self._on_state("idle", None, None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.idle_poll_s)

    async def drain(self, timeout_s: float) -> bool:
        """Forward until nothing is pending (True) or ``timeout_s`` has passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            result = await self.forward_round()
            if result.kind == "empty":
                return True
            if result.kind == "progress":
                self._failures = 0
                continue
            self._failures += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            delay = min(self._backoff(result), remaining)
            log.warning("usb.forward.retry_later", delay_s=round(delay, 2), reason=result.error)
            self._on_state("blocked" if result.kind == "blocked" else "waiting", None, result.error)
            await asyncio.sleep(delay)

    async def forward_round(self) -> RoundResult:
        entries = await asyncio.to_thread(self.spool.pending_batches)
        custody = await asyncio.to_thread(self.spool.pending_custody)
        if not entries and not custody:
            return RoundResult("empty")
        self._on_state("sending", None, None)
        delivered = rejected = 0
        deferred: _Outcome | None = None
        step = self.config.concurrency
        for i in range(0, len(entries), step):
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._send_batch(e)) for e in entries[i : i + step]]
            outcomes = [t.result() for t in tasks]
            delivered += sum(o.kind == "delivered" for o in outcomes)
            rejected += sum(o.kind == "rejected" for o in outcomes)
            stop = next((o for o in outcomes if o.kind in ("transient", "blocked")), None)
            if stop is not None:
                return RoundResult(stop.kind, delivered, rejected, stop.retry_after_s, stop.error)
            deferred = next((o for o in outcomes if o.kind == "deferred"), deferred)
            self._on_state("sending", None, None)
        for c in custody:
            outcome = await self._send_custody(c)
            if outcome.kind in ("transient", "blocked"):
                return RoundResult(outcome.kind, delivered, rejected, outcome.retry_after_s, outcome.error)
            deferred = outcome if outcome.kind == "deferred" else deferred
        if deferred is not None:  # the others went through; back off before asking again
            return RoundResult("transient", delivered, rejected, None, deferred.error)
        return RoundResult("progress", delivered, rejected)

    async def _send_batch(self, entry: SpoolEntry) -> _Outcome:
        fields = {"device_id": entry.device_id, "seq": entry.seq}
        try:
            envelope = await asyncio.to_thread(self.spool.read, entry)
        except SpoolError as e:
            log.error("usb.spool.entry_corrupt", error=str(e), **fields)
            return await self._reject(entry, {"code": e.code, "detail": e.message, **fields})
        try:
            answer = await self.client.post_batch(envelope)
            await asyncio.to_thread(self.spool.complete, entry, answer.receipt, self.trust.gateway_keys())
        except GatewayUnreachable as e:
            return _Outcome("transient", e.retry_after_s, f"{e.code}: {e}")
        except BadReceipt as e:
            log.error("usb.forward.bad_receipt", error=str(e), **fields)
            return _Outcome("transient", None, f"{e.code}: {e}")
        except SpoolError as e:
            log.error("usb.forward.spool_error", error=str(e), **fields)
            return _Outcome("transient", None, f"{e.code}: {e}")
        except GatewayRefused as e:
            return await self._refused(entry, e, fields)
        self.delivered_total += 1
        log.info("usb.forward.delivered", duplicate=answer.duplicate, road=answer.road,
                 batch_hash=entry.batch_hash.hex(), **fields)
        return _Outcome("delivered")

    async def _send_custody(self, entry: CustodyEntry) -> _Outcome:
        fields = {"device_id": entry.device_id, "pulled_at_ms": entry.pulled_at_ms}
        try:
            record = await asyncio.to_thread(self.spool.read, entry)
            await self.client.post_custody(record)
            await asyncio.to_thread(self.spool.complete_custody, entry)
        except GatewayUnreachable as e:
            return _Outcome("transient", e.retry_after_s, f"{e.code}: {e}")
        except SpoolError as e:
            log.error("usb.forward.spool_error", error=str(e), **fields)
            return _Outcome("transient", None, f"{e.code}: {e}")
        except GatewayRefused as e:
            return await self._refused(entry, e, fields)
        log.info("usb.custody.delivered", **fields)
        return _Outcome("delivered")

    async def _refused(self, entry: SpoolEntry | CustodyEntry, e: GatewayRefused,
                       fields: dict[str, object]) -> _Outcome:
        """Whose fault is a 4xx? 401/403 are ambiguous (the station's signature or the tablet's batch):
        a signed probe that the gateway accepts clears the station."""
        station_level = e.problem_code in _STATION_CODES
        if not station_level and e.status in (401, 403):
            station_level = not await probe(self.client)
        if station_level:
            log.error("usb.forward.station_refused", code=e.problem_code, status=e.status, **fields)
            return _Outcome("blocked", None, f"gateway refuses this station: {e.problem_code}")
        if e.problem_code in _LATER_CODES:
            # e.g. the gateway's registry does not list this tablet yet: it will after its next update.
            log.warning("usb.forward.deferred", code=e.problem_code, status=e.status, **fields)
            return _Outcome("deferred", None, f"gateway not ready for this entry: {e.problem_code}")
        event = "usb.security.event" if e.problem_code == "conflict" else "usb.forward.rejected"
        log.warning(event, code=e.problem_code, status=e.status, kind="gateway-refusal", **fields)
        return await self._reject(entry, {"status": e.status, "code": e.problem_code, "detail": e.message, **fields})

    async def _reject(self, entry: SpoolEntry | CustodyEntry, reason: dict[str, object]) -> _Outcome:
        try:
            await asyncio.to_thread(self.spool.reject, entry, {**reason, "at_ms": time.time_ns() // 1_000_000})
        except SpoolError as e:
            log.error("usb.forward.spool_error", error=str(e))
            return _Outcome("transient", None, f"{e.code}: {e}")
        return _Outcome("rejected")
