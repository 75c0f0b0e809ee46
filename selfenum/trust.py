"""The registry snapshot the web service trusts, kept fresh from the gateway, for verifying receipts.

Receipts are verified against the ``gateway_keys`` of the newest snapshot
accepted (``keys.snapshots.SnapshotCache``: root signature, no rollback,
persisted in the state directory), so a receipt-key rotation during the
window does not stall delivery. Until a snapshot is held, the keys the
bundle was provisioned with are used. ``refresh_loop`` fetches
``GET /v1/registry`` every ``interval_s``; a failure is logged and retried on
the next round, never fatal.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from gwclient import GatewayClientError, SignedGatewayClient
from keys.bundle import ProvisioningBundle
from keys.errors import KeysError
from keys.snapshots import SnapshotCache
from wire.errors import WireError

__all__ = ["WebTrust"]

log = structlog.get_logger("selfenum.trust")


class WebTrust:
    def __init__(self, bundle: ProvisioningBundle, path: Path) -> None:
        self._bundle = bundle
        self.cache = SnapshotCache.open(path, bundle.root_public_key)
        try:
            self.cache.offer(bundle.snapshot, now_ms=time.time_ns() // 1_000_000)
        except (WireError, KeysError) as e:  # expired, or older than the held one: the held one stays
            log.info("selfenum.trust.bundle_snapshot_skipped", code=e.code)

    @property
    def version(self) -> int:
        return self.cache.version

    def gateway_keys(self) -> dict[bytes, bytes]:
        snap = self.cache.snapshot
        return snap.gateway_key_map() if snap is not None else self._bundle.gateway_key_map()

    async def refresh(self, client: SignedGatewayClient) -> bool:
        try:
            data = await client.get_registry()
            snap = await asyncio.to_thread(self.cache.offer, data, now_ms=time.time_ns() // 1_000_000)
        except GatewayClientError as e:
            log.warning("selfenum.trust.refresh_failed", code=e.code)
            return False
        except (WireError, KeysError) as e:
            log.error("selfenum.trust.snapshot_refused", code=e.code)
            return False
        log.info("registry.refreshed", version=snap.version)
        return True

    async def refresh_loop(self, client: SignedGatewayClient, interval_s: float) -> None:
        while True:
            await self.refresh(client)
            await asyncio.sleep(interval_s)
