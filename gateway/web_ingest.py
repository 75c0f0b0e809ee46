"""POST /v1/batches: authenticate, verify, open, validate, store durably, receipt.

Order matters and is the spec's: request signature -> envelope structure ->
signer may carry this device's batch -> envelope signature and hash (device
key from the registry) -> schema name -> idempotency lookup -> recipient and
decryption -> sheet validation -> one atomic commit of nonce + batch + sheets
-> receipt. Nothing is decrypted before both signatures are verified, and the
receipt is returned only after the commit is durable.
"""

from __future__ import annotations

import base64
import time
from typing import Any, assert_never

import structlog
from aiohttp import web

from wire import decode_envelope, make_receipt, open_batch, verify_envelope
from wire.errors import RevokedKeyError
from wire.limits import Limits

from .context import CTX, GatewayContext
from .errors import ClientProblem, Unavailable
from .sheets import SHEET_SCHEMA_NAME
from .store import Conflict, Duplicate, IngestItem, ReplayError, Stored, StoreError
from .web_common import read_body, record_security_event, signed_request

__all__ = ["post_batch"]

log = structlog.get_logger("sanaq.gateway")
BATCH_TYPE = "application/vnd.sanaq.batch"


def _answer(
    receipt: bytes, *, duplicate: bool, batch_hash: bytes, device_id: str, seq: int, received_at_ms: int, road: str
) -> web.Response:
    body: dict[str, Any] = {
        "receipt": base64.b64encode(receipt).decode("ascii"),
        "duplicate": duplicate,
        "batch_hash": batch_hash.hex(),
        "device_id": device_id,
        "seq": seq,
        "received_at_ms": received_at_ms,
        "road": road,
    }
    return web.json_response(body)


async def post_batch(request: web.Request) -> web.Response:
    """Read the body under its deadline, then take one of ``limits.max_concurrent_ingest`` slots or answer 503.

    The slot is taken only once the whole body is here, so a client that
    sends its body slowly holds a connection, never a slot; and a full house
    is answered at once (``503`` + ``Retry-After``), not queued.
    """
    ctx: GatewayContext = request.app[CTX]
    body = await read_body(request, ctx, BATCH_TYPE)
    if ctx.ingest_slots.locked():
        raise Unavailable(
            "the gateway is at its ingest capacity; retry later", retry_after_s=ctx.config.limits.retry_after_s
        )
    async with ctx.ingest_slots:
        return await _post_batch(request, ctx, body)


async def _post_batch(request: web.Request, ctx: GatewayContext, body: bytes) -> web.Response:
    auth, trust = await signed_request(request, ctx, body, record_nonce=False)
    limits = Limits(
        max_envelope_bytes=ctx.config.limits.max_body_bytes,
        max_records_per_batch=ctx.config.limits.max_sheets_per_batch,
    )
    envelope = decode_envelope(body, limits)
    header = envelope.header
    structlog.contextvars.bind_contextvars(device_id=header.device_id, seq=header.seq)
    signer = auth.signer
    if signer.kind in ("tablet", "web") and signer.ident != header.device_id:
        await record_security_event(
            ctx,
            "device-mismatch",
            device_id=header.device_id,
            seq=header.seq,
            key_id=signer.key_id.hex(),
            detail={"sender": signer.ident},
        )
        raise ClientProblem("a tablet or web service may only send its own batches", code="device-mismatch")
    try:
        # A web service seals its respondents' sheets under its own id and key (road web:<id>).
        device = trust.web_service(header.device_id) if signer.kind == "web" else trust.tablet(header.device_id)
    except RevokedKeyError:
        await record_security_event(ctx, "revoked-device-batch", device_id=header.device_id, seq=header.seq)
        raise
    verified = verify_envelope(envelope, device.public_key)
    if header.schema != SHEET_SCHEMA_NAME:
        raise ClientProblem(f"unknown sheet schema {header.schema!r}", code="unsupported-schema")
    # The envelope is the body, whose SHA-256 the request check computed for its Content-Digest.
    batch_hash = auth.body_sha256 if auth.body_sha256 is not None else envelope.batch_hash
    structlog.contextvars.bind_contextvars(batch_hash=batch_hash.hex())

    existing = await ctx.store.find_batch(header.device_id, header.seq)
    if existing is not None:
        await _use_nonce(ctx, auth.nonce)
        if existing.batch_hash == batch_hash:
            ctx.metrics.duplicates.inc()
            log.info("batch.duplicate", road=signer.road)
            return _answer(
                existing.receipt,
                duplicate=True,
                batch_hash=batch_hash,
                device_id=header.device_id,
                seq=header.seq,
                received_at_ms=existing.received_at_ms,
                road=existing.road,
            )
        return await _conflict(ctx, header.device_id, header.seq, signer.road)

    device_slot = ctx.take_device_slot(header.device_id)  # 429 at the cap, across all workers
    ctx.metrics.inflight.inc()
    try:
        data_key = ctx.data_key_for(header.recipient_key_id) or ctx.data_key  # unknown id: WrongRecipientError
        opened = open_batch(verified, bytes(data_key.public_key), bytes(data_key), limits)
        sorted_sheets = ctx.validator.sort(opened.sheets, opened.sheet_bytes)
        received_at_ms = ctx.clock()
        receipt = make_receipt(
            batch_hash=batch_hash,
            device_id=header.device_id,
            seq=header.seq,
            received_at_ms=received_at_ms,
            road=signer.road,
            sheets_accepted=len(sorted_sheets.accepted),
            sheets_quarantined=len(sorted_sheets.quarantined),
            gateway_key=ctx.receipt_key,
        )
        item = IngestItem(
            device_id=header.device_id,
            seq=header.seq,
            batch_hash=batch_hash,
            envelope=body,
            sealed_at_ms=header.sealed_at_ms,
            request_created_s=auth.created_s,
            received_at_ms=received_at_ms,
            road=signer.road,
            signer_key_id=signer.key_id,
            schema=header.schema,
            receipt=receipt,
            sheets=sorted_sheets.accepted,
            quarantined=sorted_sheets.quarantined,
            nonce=auth.nonce,
        )
        started = time.perf_counter()
        try:
            outcome = await ctx.store.ingest(item)
        except ReplayError as e:
            raise ClientProblem("request nonce already used", code="replay") from e
        ctx.metrics.commit_latency.observe(time.perf_counter() - started)
    finally:
        ctx.give_back_device_slot(header.device_id, device_slot)
        ctx.metrics.inflight.dec()

    match outcome:
        case Stored():
            ctx.metrics.batches.labels(road="online" if signer.kind == "tablet" else signer.kind).inc()
            ctx.metrics.sheets.inc(len(item.sheets))
            ctx.metrics.quarantined.inc(len(item.quarantined))
            log.info(
                "batch.stored",
                device_id=header.device_id,
                seq=header.seq,
                batch_hash=batch_hash.hex(),
                road=signer.road,
                sheets=len(item.sheets),
                quarantined=len(item.quarantined),
                skew_ms=received_at_ms - auth.created_s * 1000,
            )
            return _answer(
                receipt,
                duplicate=False,
                batch_hash=batch_hash,
                device_id=header.device_id,
                seq=header.seq,
                received_at_ms=received_at_ms,
                road=signer.road,
            )
        case Duplicate():
            ctx.metrics.duplicates.inc()
            stored = await ctx.store.find_batch(header.device_id, header.seq)
            if stored is None:  # the store just reported it: an engine bug, not the client's doing
                raise StoreError(f"batch {header.device_id}/{header.seq} reported stored but not found")
            return _answer(
                outcome.receipt,
                duplicate=True,
                batch_hash=batch_hash,
                device_id=header.device_id,
                seq=header.seq,
                received_at_ms=stored.received_at_ms,
                road=stored.road,
            )
        case Conflict():
            return await _conflict(ctx, header.device_id, header.seq, signer.road)
        case _:
            assert_never(outcome)


async def _use_nonce(ctx: GatewayContext, nonce: Any) -> None:
    try:
        await ctx.store.use_nonce(nonce)
    except ReplayError as e:
        raise ClientProblem("request nonce already used", code="replay") from e


async def _conflict(ctx: GatewayContext, device_id: str, seq: int, road: str) -> web.Response:
    await record_security_event(ctx, "seq-conflict", device_id=device_id, seq=seq, detail={"road": road})
    raise ClientProblem("another batch is stored under this device and seq", code="conflict")
