"""The crypto ceiling per core: the gateway's cryptographic work per batch, measured in-process.

Steps, each timed over the same envelopes (one thread, so "per core"):

* ``request_verify``: ``httpsig.parse_and_verify_request`` (RFC 9421 parse,
  Content-Digest SHA-256 of the body, Ed25519 verify);
* ``envelope_verify``: ``decode_envelope`` + ``verify_envelope`` (structure,
  ciphertext SHA-256, Ed25519 verify);
* ``open``: ``open_batch`` as the gateway calls it (X25519 sealed box +
  canonical JSON decode of the plaintext and its binding checks, each
  sheet's canonical bytes cut from the plaintext);

their sum is the crypto ceiling (batches/s on one core). Reported beside it
and not in it: ``receipt_sign`` (``make_receipt``) and ``schema_validate``
(the gateway's ``SheetValidator.sort`` given the sheets' sealed bytes: JSON
Schema and cross-field rules of every sheet, no re-encoding), the
non-cryptographic work the gateway also does per batch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from gateway.sheets import SheetValidator
from wire import decode_envelope, httpsig, key_id, make_receipt, open_batch, verify_envelope
from wire.limits import Limits

from .fleet import BenchFleet
from .loadgen import BATCH_TYPE
from .workload import WorkItem

__all__ = ["measure_crypto_ceiling"]


def _time_per_item(fn: Callable[[int], object], n: int, min_s: float) -> float:
    """Seconds per call of ``fn(i)`` for i in 0..n-1, repeated until ``min_s`` has passed."""
    calls = 0
    started = time.perf_counter()
    while True:
        for i in range(n):
            fn(i)
        calls += n
        elapsed = time.perf_counter() - started
        if elapsed >= min_s:
            return elapsed / calls


def measure_crypto_ceiling(items: list[WorkItem], *, min_s: float = 1.0) -> dict[str, Any]:
    fleet = BenchFleet(tablets=0)
    limits = Limits()
    pubs = {i.device_index: bytes(BenchFleet.tablet_key(i.device_index).verify_key) for i in items}
    by_kid = {key_id(p): p for p in pubs.values()}
    authority, path, now = "127.0.0.1:8443", "/v1/batches", int(time.time())
    signed = []
    for item in items:
        headers = httpsig.sign_request(
            method="POST", authority=authority, path=path, content_type=BATCH_TYPE, body=item.envelope,
            signing_key=BenchFleet.tablet_key(item.device_index), created=now,
            nonce=hashlib.sha256(item.envelope).hexdigest()[:32], scheme="http",
        )
        headers["Content-Type"] = BATCH_TYPE
        signed.append(headers)
    verified = [verify_envelope(decode_envelope(i.envelope, limits), pubs[i.device_index]) for i in items]
    opened = [open_batch(v, fleet.data_public, bytes(fleet.data), limits) for v in verified]
    validator = SheetValidator()
    n = len(items)

    def request_verify(i: int) -> object:
        return httpsig.parse_and_verify_request(
            method="POST", authority=authority, path=path, query="", headers=signed[i], body=items[i].envelope,
            lookup_key=by_kid.__getitem__, now_s=now, scheme="http",
        )

    def envelope_verify(i: int) -> object:
        return verify_envelope(decode_envelope(items[i].envelope, limits), pubs[items[i].device_index])

    def open_(i: int) -> object:
        return open_batch(verified[i], fleet.data_public, bytes(fleet.data), limits)

    def receipt_sign(i: int) -> object:
        h = verified[i].header
        return make_receipt(batch_hash=verified[i].envelope.batch_hash, device_id=h.device_id, seq=h.seq,
                            received_at_ms=1, road="online", sheets_accepted=10, sheets_quarantined=0,
                            gateway_key=fleet.receipt)

    def schema_validate(i: int) -> object:
        return validator.sort(opened[i].sheets, opened[i].sheet_bytes)

    steps = {
        "request_verify": request_verify,
        "envelope_verify": envelope_verify,
        "open": open_,
        "receipt_sign": receipt_sign,
        "schema_validate": schema_validate,
    }
    per_item = {name: _time_per_item(fn, n, min_s) for name, fn in steps.items()}
    crypto = per_item["request_verify"] + per_item["envelope_verify"] + per_item["open"]
    sheets_per_batch = sum(len(o.sheets) for o in opened) / n
    quarantined = sum(len(validator.sort(o.sheets, o.sheet_bytes).quarantined) for o in opened[:50])
    return {
        "batches_measured": n,
        "sheets_per_batch": sheets_per_batch,
        "us_per_batch": {k: v * 1e6 for k, v in per_item.items()},
        "crypto_us_per_batch": crypto * 1e6,
        "crypto_batches_per_s_per_core": 1 / crypto,
        "crypto_sheets_per_s_per_core": sheets_per_batch / crypto,
        "with_receipt_and_schema_batches_per_s_per_core": 1 / (crypto + per_item["receipt_sign"]
                                                               + per_item["schema_validate"]),
        "schema_only_batches_per_s_per_core": 1 / per_item["schema_validate"],
        "quarantined_in_first_50": quarantined,
    }
