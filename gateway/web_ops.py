"""Unauthenticated operations endpoints: health, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from wire.errors import WireError

from .context import CTX, GatewayContext
from .openapi import openapi_document
from .registry import refresh_from_store
from .store import StoreError

__all__ = ["get_healthz", "get_metrics", "get_openapi", "get_readyz"]


async def get_healthz(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    return web.json_response({"status": "ok", "server_time_ms": ctx.clock()})


async def get_readyz(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    if ctx.ready:  # the database's version, whichever worker or instance answers (one query for many callers)
        with contextlib.suppress(StoreError, WireError):  # not confirmed: reported below
            await refresh_from_store(ctx, asked_at=asyncio.get_running_loop().time())
    trust = ctx.trust.current
    problems = []
    if not ctx.ready:
        problems.append("store not open")
    if trust is None:
        problems.append("no registry snapshot")
    elif ctx.clock() >= trust.snapshot.expires_at_ms:
        problems.append("registry snapshot expired")
    elif asyncio.get_running_loop().time() - ctx.trust.confirmed_at > ctx.config.server.registry_staleness_s:
        problems.append("registry not confirmed with the database")
    body = {
        "ready": not problems,
        "problems": problems,
        "registry_version": trust.snapshot.version if trust else None,
        "server_time_ms": ctx.clock(),
    }
    return web.json_response(body, status=200 if not problems else 503)


async def get_metrics(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    data = ctx.metrics.exposition()  # the whole gateway, also with several workers
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())
