"""Pieces every signed endpoint shares: reading a capped body, authenticating, the trust in force."""

from __future__ import annotations

import structlog
from aiohttp import web

from .auth import Authenticated, authenticate
from .context import GatewayContext
from .errors import ClientProblem, Unavailable
from .store import ReplayError, SecurityEvent
from .trust import Trust

__all__ = ["current_trust", "read_body", "record_security_event", "signed_request"]

log = structlog.get_logger("sanaq.gateway")


def current_trust(ctx: GatewayContext) -> Trust:
    trust = ctx.trust.current
    if trust is None:
        raise Unavailable("no registry snapshot loaded", retry_after_s=ctx.config.limits.retry_after_s)
    if ctx.clock() >= trust.snapshot.expires_at_ms:
        log.error("registry.expired", version=trust.snapshot.version)
        raise Unavailable("registry snapshot expired; publish a new one", retry_after_s=60)
    return trust


async def read_body(request: web.Request, ctx: GatewayContext, content_type: str | None) -> bytes:
    if content_type is not None and request.content_type != content_type:
        raise ClientProblem(f"Content-Type must be {content_type}", code="unsupported-media-type")
    limit = ctx.config.limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ClientProblem(f"body larger than {limit} bytes", code="oversize")
    if request.headers.get("Content-Encoding", "identity") != "identity":
        raise ClientProblem("compressed bodies are not accepted", code="unsupported-media-type")
    return await request.read()


async def signed_request(
    request: web.Request, ctx: GatewayContext, body: bytes, *, record_nonce: bool = True
) -> tuple[Authenticated, Trust]:
    """Authenticate; unless told otherwise also record the nonce now (durably)."""
    trust = current_trust(ctx)
    try:
        auth = authenticate(request, body, trust, now_ms=ctx.clock(), window_s=ctx.config.limits.request_window_s)
    except Exception as e:
        code = getattr(e, "code", None)
        if code in ("revoked",):
            facts = getattr(e, "facts", {})
            await record_security_event(ctx, "revoked-signer", device_id=facts.get("signer"),
                                        key_id=facts.get("key_id"), detail={"reason": str(e)})
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
