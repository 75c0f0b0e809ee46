"""Pieces every signed endpoint shares: reading a capped body, authenticating, the trust in force."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from wire.errors import RevokedKeyError

from .auth import Authenticated, authenticate
from .context import GatewayContext
from .errors import ClientGone, ClientProblem, Unavailable
from .registry import fresh_trust
from .store import ReplayError, SecurityEvent
from .trust import Trust

__all__ = ["current_trust", "read_body", "record_security_event", "signed_request"]

log = structlog.get_logger("sanaq.gateway")


async def current_trust(ctx: GatewayContext) -> Trust:
    """The registry in force, confirmed against the database within ``server.registry_staleness_s``."""
    trust = await fresh_trust(ctx)
    if trust is None:
        raise Unavailable("no registry snapshot loaded", retry_after_s=ctx.config.limits.retry_after_s)
    if ctx.clock() >= trust.snapshot.expires_at_ms:
        log.error("registry.expired", version=trust.snapshot.version)
        raise Unavailable("registry snapshot expired; publish a new one", retry_after_s=60)
    return trust


async def read_body(request: web.Request, ctx: GatewayContext, content_type: str | None) -> bytes:
    """The whole body, read under the body deadline and the buffered-body budget, before any other work.

    The deadline has two parts (``limits``): the whole body within
    ``body_timeout_s``, and after ``body_rate_grace_s`` at least
    ``body_min_rate_bytes_s`` on average; a body that falls behind is refused
    with ``408 request-timeout`` and its connection closed. Bytes held by
    bodies being read count against ``max_buffered_body_bytes`` (memory cap,
    ``503`` when exceeded). A client that hangs up mid-body raises
    ``ClientGone``.
    """
    if content_type is not None and request.content_type != content_type:
        raise ClientProblem(f"Content-Type must be {content_type}", code="unsupported-media-type")
    limits = ctx.config.limits
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise ClientProblem(f"body larger than {limits.max_body_bytes} bytes", code="oversize")
    if request.headers.get("Content-Encoding", "identity") != "identity":
        raise ClientProblem("compressed bodies are not accepted", code="unsupported-media-type")
    loop = asyncio.get_running_loop()
    started = loop.time()
    whole = started + limits.body_timeout_s
    body = bytearray()
    try:
        while True:
            deadline = min(whole, started + limits.body_rate_grace_s + len(body) / limits.body_min_rate_bytes_s)
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise _too_slow(request, len(body), loop.time() - started) from None
            if not chunk:
                return bytes(body)
            if len(body) + len(chunk) > limits.max_body_bytes:
                raise ClientProblem(f"body larger than {limits.max_body_bytes} bytes", code="oversize")
            ctx.body_buffer.take(len(chunk), retry_after_s=limits.retry_after_s)
            body += chunk
    except (ConnectionError, web.RequestPayloadError) as e:  # the client hung up or broke the framing
        log.info("request.body.abandoned", received_bytes=len(body), error=type(e).__name__)
        raise ClientGone(f"request body not completed: {type(e).__name__}") from e
    finally:
        ctx.body_buffer.give_back(len(body))


def _too_slow(request: web.Request, received: int, elapsed_s: float) -> ClientProblem:
    """A body behind its deadline: the connection is not reused (the rest of the body may still come)."""
    request.protocol.close()  # answer, then close: the rest of the body is not waited for past lingering_time
    log.info("request.body.too_slow", received_bytes=received, elapsed_s=round(elapsed_s, 3))
    return ClientProblem("request body not received in time", code="request-timeout")


async def signed_request(
    request: web.Request, ctx: GatewayContext, body: bytes, *, record_nonce: bool = True
) -> tuple[Authenticated, Trust]:
    """Authenticate; unless told otherwise also record the nonce now (durably)."""
    trust = await current_trust(ctx)
    try:
        auth = authenticate(request, body, trust, now_ms=ctx.clock(), window_s=ctx.config.limits.request_window_s)
    except RevokedKeyError as e:
        await record_security_event(ctx, "revoked-signer", device_id=e.facts.get("signer"),
                                    key_id=e.facts.get("key_id"), detail={"reason": str(e)})
        raise
    structlog.contextvars.bind_contextvars(signer=auth.signer.ident)
    if record_nonce:
        try:
            await ctx.store.use_nonce(auth.nonce)
        except ReplayError as e:
            raise ClientProblem("request nonce already used", code="replay") from e
    return auth, trust


async def record_security_event(
    ctx: GatewayContext,
    kind: str,
    *,
    device_id: str | None = None,
    seq: int | None = None,
    key_id: str | None = None,
    detail: dict[str, str | int] | None = None,
) -> None:
    ctx.metrics.security_events.labels(kind=kind).inc()
    log.warning("security.event", kind=kind, device_id=device_id, seq=seq, key_id=key_id)
    await ctx.store.record_security_event(
        SecurityEvent(at_ms=ctx.clock(), kind=kind, device_id=device_id, seq=seq, key_id=key_id, detail=detail or {})
    )
