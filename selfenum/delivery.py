"""Sealing a finished questionnaire and delivering it to the gateway, now or later.

``Sealer`` makes the batch: the sheet sealed to the census data *public* key
and signed with the web service key under its own id (road ``web:<id>``).
``Deliverer`` sends a spooled envelope through ``gwclient`` and accepts the
answer only as a receipt that verifies with the snapshot's gateway keys and
names this envelope's hash, this id and this seq. The background loop
(``forward_loop``, owned by the app's ``cleanup_ctx``) retries queued
submissions with capped exponential back-off and the gateway's Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from nacl.signing import SigningKey

from gwclient import GatewayClientError, GatewayRefused, GatewayUnreachable, SignedGatewayClient
from wire import canonical, parse_receipt, seal_batch
from wire.errors import WireError

from .store import SelfenumStore, Submission

__all__ = ["Deliverer", "Sealer"]

log = structlog.get_logger("selfenum.delivery")


@dataclass(frozen=True)
class Sealer:
    web_id: str
    key: SigningKey
    data_public_key: bytes

    def seal(self, sheet: dict[str, Any], seq: int, *, now_ms: int) -> tuple[bytes, str]:
        envelope = seal_batch(device_id=self.web_id, seq=seq, sheets=[sheet], sealed_at_ms=now_ms,
                              device_key=self.key, data_public_key=self.data_public_key,
                              ephemeral_secret=os.urandom(32))
        return envelope, hashlib.sha256(envelope).hexdigest()


def encoded_size(sheet: dict[str, Any]) -> int:
    return len(canonical.encode(sheet))


class Deliverer:
    def __init__(self, store: SelfenumStore, client: SignedGatewayClient, *, web_id: str,
                 gateway_keys: Callable[[], dict[bytes, bytes]], initial_backoff_s: float,
                 max_backoff_s: float, max_inflight: int = 2) -> None:
        self._store = store
        self._client = client
        self._web_id = web_id
        self._gateway_keys = gateway_keys
        self._initial = initial_backoff_s
        self._max = max_backoff_s
        self.wake = asyncio.Event()
        self.delivered = 0
        self.failures = 0
        self._inflight: set[int] = set()
        self._slots = asyncio.Semaphore(max_inflight)

    async def deliver(self, sub: Submission) -> float | None:
        """Try once. None when delivered (or refused for good); else the seconds to wait before retrying.

        The submit handler and the background loop may both reach one submission: only one sends it at a time;
        at most ``max_inflight`` batches are at the gateway at once (its per-device admission limit).
        """
        if sub.seq in self._inflight:
            return None
        self._inflight.add(sub.seq)
        try:
            async with self._slots:
                return await self._deliver(sub)
        finally:
            self._inflight.discard(sub.seq)

    async def _deliver(self, sub: Submission) -> float | None:
        try:
            envelope = self._store.spool_path(sub.seq).read_bytes()
        except OSError:
            log.error("selfenum.spool.missing", seq=sub.seq)
            self._store.refused(sub.entry_id, "spool file missing")
            return None
        try:
            answer = await self._client.post_batch(envelope)
            receipt = parse_receipt(answer.receipt, self._gateway_keys())
        except GatewayUnreachable as e:
            self.failures += 1
            log.info("selfenum.forward.deferred", seq=sub.seq, reason=str(e)[:100])
            return e.retry_after_s
        except GatewayRefused as e:
            self.failures += 1
            if e.status in (401, 403, 503) or e.problem_code in ("unknown-key", "revoked", "clock-skew"):
                log.warning("selfenum.forward.blocked", seq=sub.seq, code=e.problem_code)
                return self._max
            log.error("selfenum.forward.refused", seq=sub.seq, code=e.problem_code)
            self._store.refused(sub.entry_id, e.problem_code)
            return None
        except (GatewayClientError, WireError) as e:
            self.failures += 1
            log.warning("selfenum.forward.bad_receipt", seq=sub.seq, error=type(e).__name__)
            return self._max
        if (receipt.batch_hash.hex(), receipt.device_id, receipt.seq) != (sub.batch_hash, self._web_id, sub.seq):
            self.failures += 1
            log.error("selfenum.forward.receipt_mismatch", seq=sub.seq)
            return self._max
        self._store.delivered(sub.entry_id, receipt=receipt.raw, received_at_ms=receipt.received_at_ms)
        self.delivered += 1
        log.info("selfenum.forward.delivered", seq=sub.seq, road=receipt.road, duplicate=answer.duplicate)
        return None

    async def forward_loop(self) -> None:
        """Deliver every queued submission; sleep until woken or the back-off ends."""
        backoff = self._initial
        while True:
            wait: float | None = None
            for sub in self._store.queued():
                retry = await self.deliver(sub)
                if retry is not None:
                    wait = max(retry, backoff)
                    break
            if wait is None:
                backoff = self._initial
                wait = 60.0 if not self._store.queued(1) else 0.0
            else:
                backoff = min(backoff * 2, self._max)
            self.wake.clear()
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=wait)
            log.debug("selfenum.forward.tick", slept_s=round(time.monotonic() - started, 3))
