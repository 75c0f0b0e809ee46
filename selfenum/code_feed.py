"""Following the access codes minted on the staff dashboard (docs/protocol.md section 9.2).

``CodeFollower.poll`` asks the gateway for the changes after the version the
store holds, verifies the signed document with the gateway keys of the newest
snapshot, requires it to name this web service and the version asked from,
requires the hashes to be keyed with this service's own pepper (``pepper_id``),
and applies the changes in one transaction (``SelfenumStore.apply_code_changes``).
It asks again at once while the gateway holds more. ``follow_loop`` (owned by
the app's ``cleanup_ctx``) polls every ``codes_poll_s``; a failure is logged
and retried on the next round, never fatal. A gateway without the dashboard
answers 404: that is logged once, at info (codes then come only from the CLI).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from gwclient import GatewayClientError, GatewayRefused, SignedGatewayClient
from wire import parse_access_codes
from wire.errors import WireError

from .errors import OperatorError
from .store import SelfenumStore

__all__ = ["CodeFollower"]

log = structlog.get_logger("selfenum.codes")

_MAX_ROUNDS = 1000  # pages of 1000 changes in one poll


class CodeFollower:
    def __init__(self, store: SelfenumStore, client: SignedGatewayClient, *, web_id: str, pepper_id: str,
                 gateway_keys: Callable[[], dict[bytes, bytes]]) -> None:
        self._store = store
        self._pepper_id = pepper_id
        self._client = client
        self._web_id = web_id
        self._gateway_keys = gateway_keys
        self._no_feed_logged = False
        self._behind_logged = False
        self.polls = 0

    async def poll(self) -> bool:
        """Fetch and apply every change the gateway holds; True when the store is up to date."""
        for _ in range(_MAX_ROUNDS):
            since = self._store.codes_version()
            try:
                data = await self._client.get_access_codes(since)
                doc = parse_access_codes(data, self._gateway_keys())
            except GatewayRefused as e:
                if e.status == 404:
                    if not self._no_feed_logged:
                        log.info("selfenum.codes.no_feed")
                        self._no_feed_logged = True
                    return False
                log.warning("selfenum.codes.refused", code=e.problem_code)
                return False
            except GatewayClientError as e:
                log.warning("selfenum.codes.unreachable", code=e.code)
                return False
            except WireError as e:
                log.error("selfenum.codes.bad_document", code=e.code)
                return False
            if doc.web_id != self._web_id or doc.since != since:
                log.error("selfenum.codes.mismatch", since=since)
                return False
            if doc.latest == 0:  # the dashboard never minted a code: nothing to follow, whatever its pepper
                return True
            if doc.pepper_id != self._pepper_id:  # every dashboard code would be refused: say so, apply nothing
                log.error("selfenum.codes.pepper_mismatch", gateway_pepper_id=doc.pepper_id,
                          own_pepper_id=self._pepper_id)
                return False
            if doc.latest < since:
                if not self._behind_logged:
                    log.error("selfenum.codes.feed_behind", held=since, latest=doc.latest)
                    self._behind_logged = True
                return False
            try:
                # the store's one connection belongs to the event loop thread; the transaction is short
                held = self._store.apply_code_changes(since, doc.codes, now_ms=time.time_ns() // 1_000_000)
            except OperatorError:  # another poll applied them first; the next round starts from there
                continue
            self.polls += 1
            if doc.codes:
                log.info("selfenum.codes.applied", changes=len(doc.codes), version=held)
            if held >= doc.latest or not doc.codes:
                return True
        return False

    async def follow_loop(self, interval_s: float) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(interval_s)
