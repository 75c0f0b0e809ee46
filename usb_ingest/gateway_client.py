"""The station's gateway client: the shared signed client (``gwclient``) with the station's error tree.

Signing, TLS pinning (``keys.client_ssl_context``), ``Retry-After`` (both
forms), the one re-sign after a ``clock-skew`` or ``replay`` refusal and the
answer caps all live once, in ``gwclient.SignedGatewayClient`` (STYLE.md
section 19). Here its errors become the station's own:

* ``GatewayUnreachable`` - connection failures, timeouts, 5xx, 429; carries the
  ``Retry-After`` in seconds when the gateway sent one. Worth retrying.
* ``GatewayRefused`` - a 4xx problem answer with its ``code``; the caller
  decides whether the refusal concerns the request or the station.
* ``BadReceipt`` - a 200 answer without a readable receipt.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nacl.signing import SigningKey

import gwclient
from gwclient import BATCH_TYPE, CUSTODY_TYPE, BatchAnswer

from .errors import BadReceipt, GatewayRefused, GatewayUnreachable

__all__ = ["BATCH_TYPE", "CUSTODY_TYPE", "BatchAnswer", "GatewayClient", "probe"]

T = TypeVar("T")


async def _station_errors(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except gwclient.GatewayUnreachable as e:
        raise GatewayUnreachable(str(e), retry_after_s=e.retry_after_s, **e.facts) from e
    except gwclient.GatewayRefused as e:
        raise GatewayRefused(str(e), status=e.status, problem_code=e.problem_code,
                             server_time_ms=e.server_time_ms) from e
    except gwclient.BadAnswer as e:
        raise BadReceipt(str(e)) from e


class GatewayClient:
    """One aiohttp session to one gateway; use as ``async with GatewayClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        station_key: SigningKey,
        *,
        ssl_context: ssl.SSLContext | None,
        timeout_s: float = 30.0,
    ) -> None:
        self._client = gwclient.SignedGatewayClient(base_url, station_key, ssl_context=ssl_context,
                                                    timeout_s=timeout_s, log_area="usb")

    async def __aenter__(self) -> GatewayClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.__aexit__(*exc)

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def clock_offset_ms(self) -> int:
        return self._client.clock_offset_ms

    @clock_offset_ms.setter
    def clock_offset_ms(self, value: int) -> None:
        self._client.clock_offset_ms = value

    async def post_batch(self, envelope: bytes) -> BatchAnswer:
        """POST /v1/batches; the receipt is returned unverified (the spool verifies it)."""
        return await _station_errors(lambda: self._client.post_batch(envelope))

    async def post_custody(self, record: bytes) -> None:
        await _station_errors(lambda: self._client.post_custody(record))

    async def get_registry(self) -> bytes:
        return await _station_errors(self._client.get_registry)


async def probe(client: GatewayClient) -> bool:
    """True if the gateway accepts this station's signature right now (a signed GET /v1/registry)."""
    try:
        await client.get_registry()
    except GatewayRefused as e:
        return e.status not in (401, 403)
    except GatewayUnreachable:
        return True
    return True
