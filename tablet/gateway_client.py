"""The tablet's three conversations with the gateway, each retried by the policy and verified.

* ``post_batch(batch)`` -> (``wire.Receipt``, duplicate): the receipt must verify
  with the census gateway keys the tablet was provisioned with and name this
  device, this seq and the SHA-256 of exactly these envelope bytes.
* ``get_state()`` -> ``wire.SyncState``: verified the same way, for this device.
* ``get_assignments(since)`` -> ``wire.Assignments`` or None: one attempt, no
  retries (assignments only advise; a gateway without lists answers 503),
  verified the same way, for this device.
* ``put_registry(snapshot)`` -> version (unsigned: the root signature inside
  the snapshot is the authorisation).

Every attempt is signed afresh (new ``created``, new nonce). Results:

* ``GatewayUnreachableError`` (code ``unreachable`` or the last "not now" code):
  the retry budget ran out; nothing was decided, try again later;
* ``GatewayRefusedError`` (code = the gateway's problem code, ``tls``,
  ``clock-skew-persists``, ``bad-answer``): a person must look;
* ``ProofRefusedError`` (``receipt-refused``, ``receipt-mismatch``,
  ``state-refused``): the answer was not proof; the caller deletes nothing;
* ``Interrupted``: a stop was requested while waiting to retry.

``LinkStats`` counts retries, clock corrections and refusals by code for the
caller's report; the caller owns it and may swap it per pass.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from nacl.signing import SigningKey

from wire import Assignments, Receipt, SyncState, parse_assignments, parse_receipt, parse_sync_state
from wire.errors import WireError

from .errors import GatewayRefusedError, GatewayUnreachableError, ProofRefusedError
from .outbox_schema import StoredBatch
from .sync_policy import RETRYABLE, SyncConfig
from .transport import BATCH_TYPE, SNAPSHOT_TYPE, Answer, LinkError, Transport, gateway_ssl

__all__ = ["GatewayClient", "Interrupted", "LinkStats"]

log = structlog.get_logger("tablet.sync")


class Interrupted(Exception):
    """A stop was requested while the client waited; nothing is half done."""


@dataclass(slots=True)
class LinkStats:
    retries: int = 0
    clock_corrections: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


class GatewayClient:
    """Signed, retried, verified requests for one device. ``stop`` (an ``asyncio.Event``) cuts waits short."""

    def __init__(
        self,
        *,
        device_id: str,
        signing_key: SigningKey,
        gateway_keys: dict[bytes, bytes],
        config: SyncConfig,
        session: aiohttp.ClientSession,
        clock: Callable[[], int],
        token: Callable[[int], bytes],
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.device_id = device_id
        self._gateway_keys = gateway_keys
        self._config = config
        self._rng = rng
        self._sleep = sleep
        self.stop = stop or asyncio.Event()
        self.stats = LinkStats()
        self.transport = Transport(
            session, config.gateway_url, signing_key, clock=clock, token=token,
            timeout=aiohttp.ClientTimeout(total=config.request_timeout_s, sock_connect=config.connect_timeout_s),
            max_answer_bytes=config.max_answer_bytes, ssl_context=gateway_ssl(config.gateway_url, config.ca_cert_path),
        )

    # -- the conversations -----------------------------------------------------------------------------

    async def post_batch(self, batch: StoredBatch) -> tuple[Receipt, bool]:
        answer = await self.exchange("POST", "/v1/batches", batch.envelope, BATCH_TYPE, seq=batch.seq)
        body = _json_object(answer, seq=batch.seq)
        raw = _b64(body.get("receipt"), "receipt", seq=batch.seq)
        try:
            receipt = parse_receipt(raw, self._gateway_keys)
        except WireError as e:
            raise ProofRefusedError(f"receipt does not verify ({e.code})", code="receipt-refused",
                                    seq=batch.seq) from e
        if (receipt.device_id, receipt.seq, receipt.batch_hash) != (self.device_id, batch.seq, batch.batch_hash):
            raise ProofRefusedError("receipt names another batch", code="receipt-mismatch", seq=batch.seq,
                                    receipt_device_id=receipt.device_id, receipt_seq=receipt.seq)
        return receipt, body.get("duplicate") is True

    async def get_state(self) -> SyncState:
        answer = await self.exchange("GET", f"/v1/devices/{self.device_id}/state")
        raw = _b64(_json_object(answer).get("sync_state"), "sync_state")
        try:
            state = parse_sync_state(raw, self._gateway_keys)
        except WireError as e:
            raise ProofRefusedError(f"sync state does not verify ({e.code})", code="state-refused") from e
        if state.device_id != self.device_id:
            raise ProofRefusedError("sync state names another device", code="state-refused",
                                    state_device_id=state.device_id)
        return state

    async def get_assignments(self, since: int) -> Assignments | None:
        """The verified assignments changed after ``since`` (0: all), or None when the gateway has none now."""
        query = f"since={since}" if since else ""
        try:
            answer = await self.transport.request("GET", f"/v1/devices/{self.device_id}/assignments", query=query)
        except LinkError as e:
            log.info("sync.assignments.unreachable", device_id=self.device_id, kind=e.kind)
            return None
        if answer.status != 200:
            log.info("sync.assignments.not_served", device_id=self.device_id, status=answer.status, code=answer.code)
            return None
        raw = _b64(_json_object(answer).get("assignments"), "assignments")
        try:
            doc = parse_assignments(raw, self._gateway_keys)
        except WireError as e:
            raise ProofRefusedError(f"assignments do not verify ({e.code})", code="assignments-refused") from e
        if doc.device_id != self.device_id:
            raise ProofRefusedError("assignments name another device", code="assignments-refused")
        return doc

    async def put_registry(self, snapshot: bytes) -> int:
        answer = await self.exchange("PUT", "/v1/registry", snapshot, SNAPSHOT_TYPE, signed=False)
        version = _json_object(answer).get("version")
        if type(version) is not int:
            raise GatewayRefusedError("registry answer has no version", code="bad-answer")
        return version

    # -- one request, retried ------------------------------------------------------------------------------

    async def exchange(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None, *,
        seq: int | None = None, signed: bool = True,
    ) -> Answer:
        """Send until a 200, a refusal that needs a person, or the end of the retry budget."""
        policy = self._config.retry
        attempts = 0
        skew_fixed = False
        while True:
            if self.stop.is_set():
                raise Interrupted
            attempts += 1
            try:
                answer = await self.transport.request(method, path, body, content_type, signed=signed)
            except LinkError as e:
                if e.kind == "tls":
                    raise GatewayRefusedError(e.detail, code="tls", seq=seq) from e
                code, detail, retry_after = "unreachable", e.detail, None
            else:
                if answer.status == 200:
                    return answer
                if answer.code is None:
                    raise GatewayRefusedError(f"unexpected HTTP status {answer.status}", code="bad-answer", seq=seq)
                self.stats.refusals[answer.code] += 1
                if answer.code == "clock-skew" and answer.server_time_ms is not None:
                    if skew_fixed:
                        raise GatewayRefusedError(answer.detail or "clock skew after correction",
                                                  code="clock-skew-persists", seq=seq)
                    skew_fixed = True
                    attempts -= 1
                    offset = self.transport.learn_offset(answer.server_time_ms)
                    self.stats.clock_corrections += 1
                    log.warning("sync.clock.corrected", device_id=self.device_id, offset_ms=offset)
                    continue
                if answer.code not in RETRYABLE:
                    log.error("sync.refused", device_id=self.device_id, code=answer.code, seq=seq,
                              status=answer.status)
                    raise GatewayRefusedError(answer.detail or f"refused with {answer.code}", code=answer.code,
                                              seq=seq, status=answer.status)
                code, detail, retry_after = answer.code, answer.detail, answer.retry_after_s
            if attempts >= policy.max_attempts:
                log.warning("sync.gave_up", device_id=self.device_id, code=code, attempts=attempts, seq=seq)
                raise GatewayUnreachableError(f"{detail or code} (after {attempts} attempts)", code=code, seq=seq)
            delay = policy.delay(attempts, retry_after, self._rng)
            self.stats.retries += 1
            log.info("sync.retry", device_id=self.device_id, code=code, attempt=attempts, delay_s=round(delay, 3),
                     seq=seq)
            await self.wait(delay)

    async def wait(self, seconds: float) -> None:
        """Sleep (the injected sleep, if any) unless a stop is requested; ``Interrupted`` if it was."""
        if self._sleep is not None:
            await self._sleep(seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)
        if self.stop.is_set():
            raise Interrupted


def _json_object(answer: Answer, *, seq: int | None = None) -> dict[str, Any]:
    body = answer.json()
    if not isinstance(body, dict):
        raise GatewayRefusedError("answer is not a JSON object", code="bad-answer", seq=seq)
    return body


def _b64(value: object, name: str, *, seq: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ProofRefusedError(f"answer has no {name}", code="bad-answer", seq=seq)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProofRefusedError(f"answer's {name} is not base64", code="bad-answer", seq=seq) from e
