"""Unauthenticated operations endpoints: health, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .context import CTX, GatewayContext
from .openapi import openapi_document

__all__ = ["get_healthz", "get_metrics", "get_openapi", "get_readyz"]


async def get_healthz(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    return web.json_response({"status": "ok", "server_time_ms": ctx.clock()})


async def get_readyz(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
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
