"""RFC 9457 problem+json responses and the middleware that turns every refusal into one.

Client mistakes become their documented 4xx code; aiohttp's own HTTP errors
(404, 405, 413) are rewritten into the same shape; anything unexpected is a
500 ``internal`` whose details go to the log, never to the client.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from wire.errors import WireError

from .context import CTX, GatewayContext
from .errors import STATUS_FOR_CODE, ClientProblem, GatewayError, problem_for_wire_error
from .store import StoreUnavailable

__all__ = ["error_middleware", "problem_response"]

log = structlog.get_logger("sanaq.gateway")

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}

_AIOHTTP_CODES = {404: "not-found", 405: "method-not-allowed", 413: "oversize", 415: "unsupported-media-type"}


def problem_response(code: str, detail: str, *, now_ms: int, retry_after_s: int | None = None) -> web.Response:
    status = STATUS_FOR_CODE.get(code, 500)
    body = {
        "type": f"urn:sanaq:problem:{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        "server_time_ms": now_ms,
    }
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/problem+json", headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except WireError as e:
        response = _refuse(ctx, problem_for_wire_error(e))
    except GatewayError as e:
        response = _refuse(ctx, e)
    except StoreUnavailable as e:
        log.error("store.unavailable", error=str(e))
        response = _refuse(
            ctx,
            GatewayError(
                "store unavailable, retry later", code="unavailable", retry_after_s=ctx.config.limits.retry_after_s
            ),
        )
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _AIOHTTP_CODES.get(e.status, "malformed" if e.status < 500 else "internal")
        response = _refuse(ctx, ClientProblem(e.reason or "refused", code=code))
    except Exception:
        log.exception("request.failed", route=route)
        response = _refuse(ctx, GatewayError("internal error", code="internal"))
    ctx.metrics.requests.labels(route=route, status=str(response.status)).inc()
    return response


def _refuse(ctx: GatewayContext, err: GatewayError) -> web.Response:
    ctx.metrics.refusals.labels(code=err.code).inc()
    retry = err.retry_after_s if err.code in ("unavailable", "too-many-requests") else None
    if err.code in ("unavailable", "too-many-requests") and retry is None:
        retry = ctx.config.limits.retry_after_s
    level = log.warning if err.code in ("unknown-key", "revoked") else log.info  # what on-call must see
    level("request.refused", code=err.code, detail=str(err))
    return problem_response(err.code, err.detail, now_ms=ctx.clock(), retry_after_s=retry)
