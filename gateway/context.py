"""Everything a gateway request handler needs, held in one object on the app."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from wire import RegistrySnapshot, key_id

from .config import GatewayConfig, LimitsConfig
from .device_slots import DeviceSlots
from .errors import ClientProblem, Unavailable
from .metrics import GatewayMetrics
from .sheets import SheetValidator
from .store import CensusStore
from .trust import Trust

__all__ = ["CTX", "BodyBudget", "GatewayContext", "TrustHolder", "wall_clock_ms"]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class TrustHolder:
    """The one mutable reference to the current ``Trust``; replaced whole, never edited.

    ``confirmed_at`` (event-loop time) is when the database was last seen to
    hold no newer snapshot (``gateway.registry``); ``refreshing`` lets one
    such check run at a time.
    """

    def __init__(self, trust: Trust | None = None) -> None:
        self.current = trust
        self.confirmed_at = float("-inf")
        self.refreshing = asyncio.Lock()

    def replace(self, snapshot: RegistrySnapshot) -> None:
        self.current = Trust.of(snapshot)


class BodyBudget:
    """Bytes of request bodies being received right now, across all connections, under one cap.

    Bodies are read before an ingest slot is taken (a slow body holds no
    slot), so this, not ``max_concurrent_ingest``, bounds their memory.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int, *, retry_after_s: int) -> None:
        if self.held + n > self.limit:
            raise Unavailable("too many request bodies being received; retry later", retry_after_s=retry_after_s)
        self.held += n

    def give_back(self, n: int) -> None:
        self.held -= n


@dataclass(slots=True)
class GatewayContext:
    config: GatewayConfig
    store: CensusStore
    data_key: PrivateKey
    receipt_key: SigningKey
    root_public_key: bytes
    validator: SheetValidator
    metrics: GatewayMetrics
    trust: TrustHolder
    clock: Callable[[], int] = wall_clock_ms
    # the per-device in-flight cap; shared by all workers when ``server.workers`` > 1 (``gateway.device_slots``)
    device_slots: DeviceSlots = field(default_factory=lambda: DeviceSlots(LimitsConfig().max_inflight_per_device))
    ingest_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(512))
    body_buffer: BodyBudget = field(default_factory=lambda: BodyBudget(256 * 1024 * 1024))
    ready: bool = False
    # where tablets' assignments come from (``gateway.web_assignments``); set by the staff dashboard, which
    # holds the respondent lists; None: GET .../assignments answers 503
    assignments: Any = None

    previous_data_keys: tuple[PrivateKey, ...] = ()

    @property
    def inflight_by_device(self) -> Counter[str]:
        """This process's batch requests being processed, by device."""
        return self.device_slots.local

    def take_device_slot(self, device_id: str) -> int:
        """One in-flight slot of ``device_id``, or ``ClientProblem`` 429 at ``limits.max_inflight_per_device``."""
        slot = self.device_slots.take(device_id)
        if slot is None:
            raise ClientProblem("too many concurrent requests for this device", code="too-many-requests")
        return slot

    def give_back_device_slot(self, device_id: str, slot: int) -> None:
        self.device_slots.give_back(device_id, slot)

    @property
    def data_public_key(self) -> bytes:
        return bytes(self.data_key.public_key)

    def data_key_for(self, recipient_key_id: bytes) -> PrivateKey | None:
        """The data key a batch was sealed to: the current one or a retired one kept after rotation."""
        for key in (self.data_key, *self.previous_data_keys):
            if key_id(bytes(key.public_key)) == recipient_key_id:
                return key
        return None


CTX = web.AppKey("sanaq_gateway_context", GatewayContext)
