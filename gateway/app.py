"""``create_app``: the gateway as an aiohttp application, its routes and its owned background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import structlog
from aiohttp import web
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from .config import GatewayConfig
from .context import CTX, BodyBudget, GatewayContext, TrustHolder, wall_clock_ms
from .device_slots import DeviceSlots
from .metrics import GatewayMetrics
from .problems import error_middleware
from .registry import follow_registry, load_registry
from .sheets import SheetValidator
from .store import CensusStore
from .web_assignments import get_device_assignments
from .web_codes import get_access_codes
from .web_ingest import post_batch
from .web_ops import get_healthz, get_metrics, get_openapi, get_readyz
from .web_state import get_device_state, get_registry, post_custody, put_registry

__all__ = ["ROUTES", "create_app"]

log = structlog.get_logger("sanaq.gateway")

ROUTES: tuple[tuple[str, str, Callable[[web.Request], object]], ...] = (
    ("POST", "/v1/batches", post_batch),
    ("GET", "/v1/devices/{device_id}/state", get_device_state),
    ("GET", "/v1/devices/{device_id}/assignments", get_device_assignments),
    ("GET", "/v1/registry", get_registry),
    ("PUT", "/v1/registry", put_registry),
    ("POST", "/v1/custody", post_custody),
    ("GET", "/v1/web/access-codes/since/{version}", get_access_codes),
    ("GET", "/healthz", get_healthz),
    ("GET", "/readyz", get_readyz),
    ("GET", "/metrics", get_metrics),
    ("GET", "/v1/openapi.json", get_openapi),
)


def create_app(
    config: GatewayConfig,
    store: CensusStore,
    *,
    data_key: PrivateKey,
    previous_data_keys: Sequence[PrivateKey] = (),
    receipt_key: SigningKey,
    root_public_key: bytes,
    bootstrap_snapshot: bytes | None = None,
    clock: Callable[[], int] = wall_clock_ms,
) -> web.Application:
    metrics = GatewayMetrics(lambda: float(getattr(store, "queue_depth", 0)))
    ctx = GatewayContext(
        config=config,
        store=store,
        data_key=data_key,
        previous_data_keys=tuple(previous_data_keys),
        receipt_key=receipt_key,
        root_public_key=root_public_key,
        validator=SheetValidator(census=config.census.census_moment()),
        metrics=metrics,
        ingest_slots=asyncio.Semaphore(config.limits.max_concurrent_ingest),
        body_buffer=BodyBudget(config.limits.max_buffered_body_bytes),
        trust=TrustHolder(),
        clock=clock,
        device_slots=DeviceSlots(config.limits.max_inflight_per_device),
    )
    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        middlewares=[error_middleware],
    )
    app[CTX] = ctx
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)  # type: ignore[arg-type]
    app.cleanup_ctx.append(_store_lifecycle(bootstrap_snapshot))
    app.cleanup_ctx.append(follow_registry)
    app.cleanup_ctx.append(_nonce_purger)
    return app


def _store_lifecycle(bootstrap: bytes | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        ctx = app[CTX]
        await ctx.store.open()
        await load_registry(ctx, bootstrap)
        ctx.ready = True
        log.info(
            "gateway.store.open", registry_version=ctx.trust.current.snapshot.version if ctx.trust.current else None
        )
        yield
        ctx.ready = False
        await ctx.store.close()
        log.info("gateway.store.closed")

    return lifecycle


async def _nonce_purger(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]

    async def purge() -> None:
        while True:
            await asyncio.sleep(60)
            try:
                removed = await ctx.store.purge_nonces(ctx.clock())
                log.debug("nonces.purged", removed=removed)
            except Exception as e:  # the purge must never take the service down
                log.warning("nonces.purge_failed", error=str(e))

    task = asyncio.create_task(purge(), name="nonce-purger")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def read_optional(path: Path | None) -> bytes | None:
    if path is None or not path.exists():
        return None
    return path.read_bytes()
