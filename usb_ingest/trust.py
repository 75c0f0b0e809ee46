"""What the station trusts: the root-signed registry snapshot, cached on disk and refreshed from the gateway.

The cache is ``keys.SnapshotCache`` at ``<state_dir>/registry.snapshot``
(rollback refused across restarts). It is seeded from the station bundle's
snapshot and refreshed with a signed ``GET /v1/registry`` every
``snapshot_refresh_s``. A snapshot past its expiry stops ingestion: pulls are
refused (``SnapshotExpired``) and the alarm ``usb.trust.expired`` is raised
until a fresh one arrives. Forwarding goes on: what is spooled was verified
while the snapshot was valid.

Tablet rules for a manifest's claimed signer: the device must be listed
(``UnknownTablet``), its status must be ``issued`` (``TabletNotInService``
for revoked, returned, lost) and the manifest's signer key id must be its
enrolled key (``KeyMismatch``).

A device the held snapshot does not list may simply be newer than it (enrolled
since the last refresh). Before refusing, the station asks the gateway for
its snapshot (at most once per ``_RECENT_REFRESH_MS``), through the client and
event loop of the last ``refresh`` (the pull runs in a worker thread). Still
unlisted after a successful refresh: ``UnknownTablet`` with ``reason =
"unknown-to-authority"`` (a security event). The gateway could not be asked:
``RegistryStale`` (``registry-stale``): this station cannot tell, which is not
an alarm about the device.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from keys import ProvisioningBundle, SnapshotCache
from keys.errors import KeysError, StorageError
from wire import RegistrySnapshot, TabletEntry
from wire.errors import ExpiredError, RollbackError, WireError

from .errors import (
    GatewayError,
    KeyMismatch,
    RegistryStale,
    SnapshotExpired,
    SnapshotMissing,
    StationSetupError,
    TabletNotInService,
    UnknownTablet,
)
from .gateway_client import GatewayClient

__all__ = ["StationTrust", "TrustState", "wall_clock_ms"]

log = structlog.get_logger("usb_ingest.trust")
_RECENT_REFRESH_MS = 30_000
_ON_DEMAND_TIMEOUT_S = 30.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TrustState:
    version: int | None
    expires_at_ms: int | None
    state: str  # "ok" | "expired" | "missing"


class StationTrust:
    def __init__(self, cache: SnapshotCache, bundle: ProvisioningBundle, clock: Callable[[], int]) -> None:
        self._cache = cache
        self._bundle = bundle
        self.clock = clock
        self._alarmed = False
        self._last_fetch_ms: int | None = None
        self._via: tuple[GatewayClient, asyncio.AbstractEventLoop] | None = None

    @classmethod
    def open(cls, path: Path, bundle: ProvisioningBundle, *, clock: Callable[[], int] = wall_clock_ms) -> StationTrust:
        try:
            cache = SnapshotCache.open(path, bundle.root_public_key)
        except KeysError as e:
            raise StationSetupError(f"registry snapshot cache unusable ({e.code})", path=str(path)) from e
        trust = cls(cache, bundle, clock)
        try:
            cache.offer(bundle.snapshot, now_ms=clock())
        except (RollbackError, ExpiredError):
            pass  # the cache holds a newer one, or the bundle's is stale: the gateway will provide one
        except StorageError as e:
            raise StationSetupError(f"cannot store the registry snapshot ({e})", path=str(path)) from e
        except (WireError, KeysError) as e:
            raise StationSetupError("the station bundle's snapshot cannot be used", path=str(path)) from e
        return trust

    @property
    def snapshot(self) -> RegistrySnapshot | None:
        return self._cache.snapshot

    def state(self) -> TrustState:
        snap = self._cache.snapshot
        if snap is None:
            return TrustState(None, None, "missing")
        return TrustState(snap.version, snap.expires_at_ms, "expired" if self.clock() >= snap.expires_at_ms else "ok")

    def current(self) -> RegistrySnapshot:
        """The snapshot to judge tablets by; ``SnapshotMissing`` / ``SnapshotExpired`` stop ingestion."""
        snap = self._cache.snapshot
        if snap is None:
            raise SnapshotMissing("no registry snapshot held; the gateway must be reached once")
        if self.clock() >= snap.expires_at_ms:
            raise SnapshotExpired(
                "registry snapshot expired: USB ingestion stopped until a fresh one is fetched",
                version=snap.version, expires_at_ms=snap.expires_at_ms,
            )
        return snap

    def tablet_for(self, snapshot: RegistrySnapshot, device_id: str, signer_key_id: bytes) -> TabletEntry:
        """The enrolled, in-service tablet whose key signed (see the module docstring)."""
        try:
            tablet = snapshot.tablet(device_id)
        except WireError as e:
            tablet = self._after_refresh(snapshot, device_id, e)
        if tablet.status != "issued":
            raise TabletNotInService("the tablet is not in service", device_id=device_id, status=tablet.status)
        if tablet.key_id != signer_key_id:
            raise KeyMismatch(
                "the manifest is signed by another key than the tablet's enrolled one",
                device_id=device_id, key_id=signer_key_id.hex(),
            )
        return tablet

    def _after_refresh(self, held: RegistrySnapshot, device_id: str, cause: WireError) -> TabletEntry:
        """Look ``device_id`` up again in a snapshot fresh from the gateway, or say why it cannot be."""
        recent = self._last_fetch_ms is not None and self.clock() - self._last_fetch_ms < _RECENT_REFRESH_MS
        if not recent and not self._fetch_from_worker():
            raise RegistryStale(
                "the tablet is not in this station's registry, and the gateway could not be asked for a newer one",
                device_id=device_id, version=held.version,
            ) from cause
        fresh = self._cache.snapshot or held
        try:
            tablet = fresh.tablet(device_id)
        except WireError as e:
            raise UnknownTablet("the manifest names a device the registry does not list", device_id=device_id,
                                reason="unknown-to-authority", version=fresh.version) from e
        log.info("usb.trust.device_found_after_refresh", device_id=device_id, version=fresh.version)
        return tablet

    def _fetch_from_worker(self) -> bool:
        """Refresh now from a pull's worker thread; False if it failed or cannot be done from here."""
        if self._via is None:
            return False
        client, loop = self._via
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return False  # on an event loop thread: blocking on the loop would deadlock
        if loop.is_closed():
            return False
        future = asyncio.run_coroutine_threadsafe(self._fetch(client), loop)
        try:
            return future.result(timeout=_ON_DEMAND_TIMEOUT_S)
        except (TimeoutError, RuntimeError):
            future.cancel()
            return False

    def gateway_keys(self) -> dict[bytes, bytes]:
        """Receipt keys: the held snapshot's (expiry does not matter for receipts), else the bundle's."""
        snap = self._cache.snapshot
        return snap.gateway_key_map() if snap is not None else self._bundle.gateway_key_map()

    def accept(self, data: bytes) -> RegistrySnapshot:
        """Offer a snapshot (root signature, expiry, no rollback); persisted when newer. Wire errors pass."""
        return self._cache.offer(data, now_ms=self.clock())

    async def refresh(self, client: GatewayClient) -> bool:
        """Fetch and offer the gateway's snapshot; True if a valid one is held afterwards.

        The client and running loop are remembered for on-demand refreshes (see ``tablet_for``).
        """
        self._via = (client, asyncio.get_running_loop())
        await self._fetch(client)
        return self.check_alarm()

    async def _fetch(self, client: GatewayClient) -> bool:
        """True if the gateway answered with a snapshot this station holds now (same or newer)."""
        try:
            data = await client.get_registry()
            snap = await asyncio.to_thread(self.accept, data)
        except GatewayError as e:
            log.warning("usb.trust.refresh_failed", code=e.code, error=str(e))
        except RollbackError as e:
            log.error("usb.trust.rollback_refused", error=str(e))
        except (WireError, KeysError) as e:
            log.error("usb.trust.snapshot_refused", code=e.code, error=str(e))
        else:
            self._last_fetch_ms = self.clock()
            log.info("registry.refreshed", version=snap.version, expires_at_ms=snap.expires_at_ms)
            return True
        return False

    def check_alarm(self) -> bool:
        """Log ``usb.trust.expired`` once per lapse (and ``usb.trust.restored``); True if trust is valid."""
        state = self.state()
        if state.state == "ok":
            if self._alarmed:
                log.info("usb.trust.restored", version=state.version)
            self._alarmed = False
            return True
        if not self._alarmed:
            log.error("usb.trust.expired", version=state.version, expires_at_ms=state.expires_at_ms,
                      state=state.state, action="USB ingestion stopped until the registry is refreshed")
        self._alarmed = True
        return False

    async def refresh_loop(self, client: GatewayClient, interval_s: float, on_change: Callable[[], None]) -> None:
        """Refresh every ``interval_s`` (sooner when expiry comes first); runs until cancelled."""
        while True:
            await self.refresh(client)
            on_change()
            delay = interval_s
            snap = self._cache.snapshot
            if snap is not None:
                until_expiry = (snap.expires_at_ms - self.clock()) / 1000
                if until_expiry > 0:
                    delay = min(delay, until_expiry + 0.5)
            await asyncio.sleep(delay)
