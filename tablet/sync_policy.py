"""What the sync engine does with each answer: retry later, fix the clock, or stop for a person.

The tables here are the client half of the error-code table in
``docs/protocol.md``:

* ``RETRYABLE`` codes mean "not now": wait (exponential back-off with full
  jitter, at least the server's ``Retry-After``) and try again, a bounded
  number of times per pass. ``replay`` is here because every attempt carries a
  fresh nonce, so a replay refusal can only come from a duplicated packet.
* ``clock-skew`` is fixed once per request, at once, from the problem's
  ``server_time_ms``.
* Every other refusal needs a person (``HINTS`` says which one and why) and
  ends the pass: retrying a revoked key or a seq conflict only adds noise to
  the gateway's security log.

Codes that the client produces itself, never sent by the gateway:
``unreachable`` (network), ``tls``, ``receipt-refused`` (a receipt that does
not verify with the census gateway keys), ``receipt-mismatch`` (a valid
receipt for some other batch), ``state-refused``, ``bad-answer``,
``clock-skew-persists``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from .outbox import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_PER_BATCH

__all__ = ["HINTS", "RETRYABLE", "RetryPolicy", "SyncConfig", "hint_for"]

RETRYABLE = frozenset({
    "too-many-requests", "unavailable", "internal", "replay", "http-500", "http-502", "http-503", "http-504",
})

HINTS: dict[str, str] = {
    "revoked": "the registry says this tablet (or its key) is out of service; do not retry. Return the tablet "
               "to the Department; its pending batches stay in the outbox and can still be exported by USB.",
    "conflict": "the gateway holds a different batch under this device and seq. The seq line was reused "
                "(re-provisioned without `init --resume-from-gateway`?) or the key was copied. Report it to "
                "the Department security officer; nothing was deleted.",
    "unknown-key": "the gateway does not know this tablet's key: the registry snapshot listing it has not "
                   "reached the gateway, or the identity is not the enrolled one.",
    "bad-signature": "the gateway could not verify this tablet's signature: the identity does not match the "
                     "registry, or something between tablet and gateway alters requests.",
    "device-mismatch": "the gateway refuses a batch of another device under this tablet's key: the outbox "
                       "belongs to another tablet.",
    "forbidden": "the gateway does not allow this tablet that request.",
    "wrong-recipient": "batches are sealed to a data key the gateway does not hold: the provisioning bundle "
                       "is outdated; re-provision the tablet.",
    "receipt-refused": "the answer's receipt does not verify with the census gateway keys: possible "
                       "interception (or a gateway key the bundle does not know). Nothing was deleted.",
    "receipt-mismatch": "the answer carried a valid receipt for some other batch. Nothing was deleted; report "
                        "it, something between tablet and gateway is wrong.",
    "state-refused": "the gateway's sync state does not verify or names another device. Nothing was deleted.",
    "bad-answer": "the gateway's answer is not what the protocol says; nothing was deleted.",
    "tls": "the gateway's TLS certificate does not chain to the census CA of this tablet's bundle: wrong "
           "server, interception, or an outdated bundle.",
    "clock-skew-persists": "the gateway refused the request time twice, even after correcting the clock.",
    "seq-diverged": "the gateway holds seqs of this device that this outbox never sealed, and this outbox "
                    "holds batches in that range: it was re-provisioned without `init --resume-from-gateway`.",
}


def hint_for(code: str) -> str:
    return HINTS.get(code, "the gateway refused the request; see its detail and docs/protocol.md.")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-request retry budget for one pass, and the back-off between attempts.

    Delay before attempt ``n + 1`` (``n`` = attempts made so far, from 1) is
    full jitter, ``uniform(0, min(cap_s, base_s * 2 ** (n - 1)))``, plus the
    server's ``Retry-After`` when it sent one (capped at
    ``max_retry_after_s``): the server's minimum is honoured and a fleet that
    got the same ``Retry-After`` does not come back in one wave.
    """

    max_attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.cap_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("retry policy values must be >= 0 (max_attempts >= 1)")

    def ceiling(self, attempts_made: int) -> float:
        return float(min(self.cap_s, self.base_s * 2 ** (attempts_made - 1)))

    def delay(self, attempts_made: int, retry_after_s: float | None, rng: random.Random) -> float:
        jitter = rng.uniform(0, self.ceiling(attempts_made))
        if retry_after_s is None:
            return jitter
        return min(retry_after_s, self.max_retry_after_s) + jitter


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Everything a sync run is told; built once by the CLI (or ``simulate_fleet``) and passed down.

    ``gateway_url`` defaults to the bundle's; ``ca_cert_path`` (the census CA
    from the bundle) is required for https. ``pack`` seals pending sheets at
    the start of each pass (after the seq line has been checked against the
    gateway). ``watch_interval_s`` is the pause between passes of ``--watch``,
    stretched or shrunk at random by up to ``watch_jitter`` of itself.
    """

    gateway_url: str
    ca_cert_path: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    max_answer_bytes: int = 1024 * 1024  # a sync state may list many gaps
    pack: bool = True
    max_per_batch: int = DEFAULT_MAX_PER_BATCH
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    connections: int = 4  # connector limit when the engine owns its HTTP session
    watch_interval_s: float = 300.0
    watch_jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.watch_interval_s < 0 or not 0 <= self.watch_jitter < 1 or self.connections < 1:
            raise ValueError("watch_interval_s >= 0, 0 <= watch_jitter < 1 and connections >= 1 are required")
