"""The registry snapshot in force: taken at start, kept in step with the database, offered by PUT.

The database holds the registry every instance must follow (several
instances may share one PostgreSQL database, and a PUT reaches one of them).
An instance keeps a verified copy in memory and trusts it for at most
``server.registry_staleness_s`` after it last confirmed that the database
holds no newer version:

* the follower task (``follow_registry``) re-checks the database's version
  when the store signals a change (PostgreSQL ``LISTEN``/``NOTIFY``, at once)
  and at the latest every half of the staleness bound;
* a request that finds the copy unconfirmed for longer than the bound checks
  the database itself before it uses the copy (``fresh_trust``), and is
  answered ``503`` when it cannot.

So a revocation committed at time T is in force on every instance for every
request that starts after T + ``registry_staleness_s``. The version only
grows: a copy is replaced only by a newer verified snapshot, and a PUT is
refused (``409 rollback``) against the database's version, not the copy's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from wire import RegistrySnapshot, accept_snapshot
from wire.errors import RollbackError, WireError

from .context import CTX, GatewayContext
from .errors import Unavailable
from .store import StoreError
from .trust import Trust

__all__ = ["accept_offered", "follow_registry", "fresh_trust", "load_registry", "refresh_from_store"]

log = structlog.get_logger("sanaq.gateway")


async def load_registry(ctx: GatewayContext, bootstrap: bytes | None) -> None:
    """At start: the store's snapshot, or the bootstrap file's when it is strictly newer.

    A bootstrap file equal to the stored snapshot (every restart, every
    instance after the first) or older than it (the store has moved on by
    PUT) is expected and logged at debug/info level, never as a refusal.
    """
    now = ctx.clock()
    stored = _verified(await ctx.store.current_snapshot(), ctx, "store", now)
    # the install-time credential expires after its validity while the store moves on: no alarm then
    offered = _verified(bootstrap, ctx, "bootstrap", now, expired_is_normal=stored is not None)
    best = stored
    if offered is not None and stored is not None and offered.version <= stored.version:
        if offered.version == stored.version and offered.raw != stored.raw:
            log.warning(
                "registry.snapshot.refused",
                source="bootstrap",
                code="rollback",
                error="another snapshot with the version the store holds",
                version=offered.version,
            )
        elif offered.version < stored.version:
            log.info("registry.bootstrap.older", version=offered.version, stored_version=stored.version)
        else:
            log.debug("registry.bootstrap.stored", version=offered.version)
    elif offered is not None:
        try:
            await ctx.store.save_snapshot(offered.version, offered.raw)
            best = offered
        except RollbackError as e:  # another instance saved a newer one meanwhile: take that
            log.info("registry.snapshot.superseded", version=offered.version, code=e.code)
            best = _verified(await ctx.store.current_snapshot(), ctx, "store", now)
    if best is None:
        log.error("registry.missing", hint="PUT /v1/registry a snapshot from `sanaq-keys publish`")
        return
    _install(ctx, best)
    ctx.trust.confirmed_at = asyncio.get_running_loop().time()


def _verified(
    raw: bytes | None, ctx: GatewayContext, source: str, now_ms: int, *, expired_is_normal: bool = False
) -> RegistrySnapshot | None:
    if raw is None:
        return None
    try:
        return accept_snapshot(raw, ctx.root_public_key, now_ms=now_ms)
    except WireError as e:
        if expired_is_normal and e.code == "expired":
            log.info("registry.bootstrap.expired", source=source)
        else:
            log.warning("registry.snapshot.refused", source=source, code=e.code, error=str(e))
        return None


def _install(ctx: GatewayContext, snapshot: RegistrySnapshot) -> bool:
    """Put ``snapshot`` in force if it is newer than the copy held; True when it was."""
    current = ctx.trust.current
    if current is not None and current.snapshot.version >= snapshot.version:
        return False
    ctx.trust.replace(snapshot)
    ctx.metrics.registry_version.set(snapshot.version)
    return True


async def refresh_from_store(ctx: GatewayContext, *, asked_at: float | None = None) -> None:
    """Compare the copy with the database's version; take the database's snapshot when it is newer.

    One check at a time; a caller that asked at ``asked_at`` is satisfied by
    a check that started after it (many requests, one query). Raises
    ``StoreError`` when the database cannot be read, ``WireError`` when its
    newer snapshot does not verify (then the copy is not confirmed).
    """
    async with ctx.trust.refreshing:
        started = asyncio.get_running_loop().time()
        if asked_at is not None and ctx.trust.confirmed_at >= asked_at:
            return
        version = await ctx.store.snapshot_version()
        current = ctx.trust.current
        held = current.snapshot.version if current is not None else 0
        if version is not None and version > held:
            raw = await ctx.store.current_snapshot()
            if raw is None:
                raise StoreError("the registry row vanished between two reads")
            snapshot = accept_snapshot(raw, ctx.root_public_key, now_ms=ctx.clock(), min_version=held)
            if _install(ctx, snapshot):
                log.info("registry.snapshot.accepted", source="store", version=snapshot.version, previous=held,
                         tablets=len(snapshot.tablets))
        elif version is not None and version < held:
            log.error("registry.store_behind", version=version, held=held)  # a restored database: keep the newer
        ctx.trust.confirmed_at = max(ctx.trust.confirmed_at, started)


async def fresh_trust(ctx: GatewayContext) -> Trust | None:
    """The copy, confirmed against the database within the staleness bound (checked now if it was not).

    Raises ``Unavailable`` (503) when the bound has passed and the database
    cannot confirm the copy.
    """
    bound = ctx.config.server.registry_staleness_s
    now = asyncio.get_running_loop().time()
    if now - ctx.trust.confirmed_at > bound:
        try:
            await refresh_from_store(ctx, asked_at=now)
        except (StoreError, WireError) as e:
            log.error("registry.unconfirmed", error=str(e), bound_s=bound)
            raise Unavailable(
                "the registry in force cannot be confirmed with the database",
                retry_after_s=ctx.config.limits.retry_after_s,
            ) from e
    return ctx.trust.current


async def accept_offered(ctx: GatewayContext, body: bytes) -> RegistrySnapshot:
    """A snapshot offered by PUT: verified, judged against the database's version, stored, put in force.

    The copy is brought up to the database's version first, so a rollback is
    refused (``RollbackError``) whichever instance the PUT reaches; the same
    snapshot again is answered without a write. Other ``WireError`` when it
    does not verify or has expired; ``Unavailable`` when the database cannot
    be asked.
    """
    try:
        await refresh_from_store(ctx)
    except StoreError as e:
        raise Unavailable("the registry cannot be read now", retry_after_s=ctx.config.limits.retry_after_s) from e
    except WireError as e:  # the database's newer snapshot no longer verifies (expired): a newer one may replace it
        log.warning("registry.snapshot.refused", source="store", code=e.code, error=str(e))
    current = ctx.trust.current
    held = current.snapshot.version if current is not None else 0
    snapshot = accept_snapshot(body, ctx.root_public_key, now_ms=ctx.clock(), min_version=held)
    if current is not None and snapshot.version == held:
        if snapshot.raw != current.snapshot.raw:
            raise RollbackError("another snapshot with the version in force", version=snapshot.version)
        return snapshot  # the one in force, confirmed in the database just now: nothing to write
    try:
        await ctx.store.save_snapshot(snapshot.version, snapshot.raw)  # the database decides, not the copy
    except RollbackError:
        with contextlib.suppress(StoreError, WireError):
            await refresh_from_store(ctx)
        raise
    if _install(ctx, snapshot):
        log.info("registry.snapshot.accepted", source="put", version=snapshot.version, tablets=len(snapshot.tablets))
    return snapshot


async def follow_registry(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the follower task and the store's change notifications, for the app's lifetime."""
    ctx = app[CTX]
    changed = asyncio.Event()
    interval = ctx.config.server.registry_staleness_s / 2

    async def follow() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await changed.wait()
            changed.clear()
            try:
                await refresh_from_store(ctx)
            except (StoreError, WireError) as e:  # requests check again themselves once the bound has passed
                log.warning("registry.follow_failed", error=str(e))

    tasks = [
        asyncio.create_task(ctx.store.watch_registry(changed.set), name="registry-watch"),
        asyncio.create_task(follow(), name="registry-follow"),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
