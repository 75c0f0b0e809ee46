"""Device sync state, the registry snapshot, and custody records from stations."""

from __future__ import annotations

import base64

import structlog
from aiohttp import web

from wire import check_device_id, compute_gaps, make_sync_state, parse_custody
from wire.errors import DecodeError

from .context import CTX, GatewayContext
from .errors import ClientProblem
from .registry import accept_offered
from .store import CustodyItem, ReplayError
from .web_common import read_body, signed_request

__all__ = ["get_device_state", "get_registry", "post_custody", "put_registry"]

log = structlog.get_logger("sanaq.gateway")
SNAPSHOT_TYPE = "application/vnd.sanaq.snapshot"
CUSTODY_TYPE = "application/vnd.sanaq.custody"


async def get_device_state(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    try:
        device_id = check_device_id(request.match_info["device_id"])
    except DecodeError as e:
        raise ClientProblem("device id malformed", code="malformed") from e
    auth, _ = await signed_request(request, ctx, b"")
    if auth.signer.kind in ("tablet", "web") and auth.signer.ident != device_id:
        raise ClientProblem("a tablet or web service may only read its own state", code="forbidden")
    seqs = await ctx.store.device_seqs(device_id)
    highest, max_seq, gaps = compute_gaps(list(seqs.seqs))
    doc = make_sync_state(
        device_id=device_id,
        issued_at_ms=ctx.clock(),
        highest_contiguous=highest,
        max_seq=max_seq,
        gaps=gaps,
        last_sync_ms=seqs.last_sync_ms,
        gateway_key=ctx.receipt_key,
    )
    return web.json_response(
        {
            "sync_state": base64.b64encode(doc).decode("ascii"),
            "device_id": device_id,
            "highest_contiguous": highest,
            "max_seq": max_seq,
            "gaps": [[a, b] for a, b in gaps],
            "last_sync_ms": seqs.last_sync_ms,
        }
    )


async def get_registry(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    _, trust = await signed_request(request, ctx, b"")
    return web.Response(
        body=trust.snapshot.raw,
        content_type=SNAPSHOT_TYPE,
        headers={"X-Sanaq-Registry-Version": str(trust.snapshot.version)},
    )


async def put_registry(request: web.Request) -> web.Response:
    """Accept a newer root-signed snapshot; the root signature is the authorisation.

    Rollback is judged against the database's version (``gateway.registry``),
    so an instance whose copy lags behind another's PUT refuses it too.
    """
    ctx: GatewayContext = request.app[CTX]
    body = await read_body(request, ctx, SNAPSHOT_TYPE)
    snapshot = await accept_offered(ctx, body)
    return web.json_response({"version": snapshot.version})


async def post_custody(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    body = await read_body(request, ctx, CUSTODY_TYPE)
    auth, _ = await signed_request(request, ctx, body, record_nonce=False)
    if auth.signer.kind != "station":
        raise ClientProblem("only stations send custody records", code="forbidden")
    record = parse_custody(body, auth.signer.public_key)
    if record.station_id != auth.signer.ident:
        raise ClientProblem("custody record names another station", code="forbidden")
    try:
        await ctx.store.add_custody(
            CustodyItem(
                station_id=record.station_id,
                device_id=record.device_id,
                pulled_at_ms=record.pulled_at_ms,
                received_at_ms=ctx.clock(),
                record=body,
                batch_count=len(record.batches),
                nonce=auth.nonce,
            )
        )
    except ReplayError as e:
        raise ClientProblem("request nonce already used", code="replay") from e
    log.info("custody.stored", station_id=record.station_id, device_id=record.device_id, batches=len(record.batches))
    return web.json_response({"stored": True, "batches": len(record.batches)})
