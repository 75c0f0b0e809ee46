"""The station's HTTP client for the gateway: every request signed with the station key (RFC 9421 profile).

TLS is pinned to the census CA (``keys.client_ssl_context``); plain ``http://``
is accepted only because tests run the gateway without TLS on loopback.

Answers become typed results or one of three errors:

* ``GatewayUnreachable`` - connection failures, timeouts, 5xx, 429; carries the
  ``Retry-After`` in seconds when the gateway sent one. Worth retrying.
* ``GatewayRefused`` - a 4xx problem answer with its ``code``; the caller
  decides whether the refusal concerns the request or the station.
* A ``clock-skew`` refusal is handled here: the offset to the gateway's
  ``server_time_ms`` is learnt and the request is signed again, once. So is a
  ``replay`` refusal (a fresh nonce fixes it).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from nacl.signing import SigningKey
from yarl import URL

from wire import httpsig

from .errors import BadReceipt, GatewayRefused, GatewayUnreachable

__all__ = ["BATCH_TYPE", "CUSTODY_TYPE", "BatchAnswer", "GatewayClient", "probe"]

log = structlog.get_logger("usb_ingest.gateway")

BATCH_TYPE = "application/vnd.sanaq.batch"
CUSTODY_TYPE = "application/vnd.sanaq.custody"
_MAX_ANSWER_BYTES = 64 * 1024
_MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
_MAX_RETRY_AFTER_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    receipt: bytes
    duplicate: bool
    road: str


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(min(int(value.strip()), _MAX_RETRY_AFTER_S))


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
        url = URL(base_url.rstrip("/"))
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError("gateway URL must be https://host[:port][/prefix]")
        self._base = url
        self._key = station_key
        self._ssl = ssl_context if url.scheme == "https" else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 10.0))
        self._session: aiohttp.ClientSession | None = None
        self.clock_offset_ms = 0

    async def __aenter__(self) -> GatewayClient:
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False, limit=8)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def url(self) -> str:
        return str(self._base)

    def _now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    def _headers(self, method: str, url: URL, body: bytes | None, content_type: str | None) -> dict[str, str]:
        authority = url.host if url.is_default_port() else f"{url.host}:{url.port}"
        headers = httpsig.sign_request(
            method=method,
            authority=authority or "",
            path=url.raw_path,
            content_type=content_type,
            body=body,
            signing_key=self._key,
            created=self._now_ms() // 1000,
            nonce=base64.urlsafe_b64encode(os.urandom(18)).decode("ascii").rstrip("="),
            scheme=url.scheme,
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def _request(
        self, method: str, path: str, body: bytes | None, content_type: str | None, max_bytes: int
    ) -> bytes:
        if self._session is None:
            raise RuntimeError("GatewayClient used outside 'async with'")
        url = self._base.with_path(self._base.path.rstrip("/") + path, encoded=False)
        for attempt in range(2):
            headers = self._headers(method, url, body, content_type)
            try:
                async with self._session.request(method, url, data=body, headers=headers) as resp:
                    status, retry_after = resp.status, _retry_after(resp.headers.get("Retry-After"))
                    data = await _read_capped(resp, max_bytes)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise GatewayUnreachable(f"gateway not reachable ({type(e).__name__})", url=str(url)) from e
            if len(data) > max_bytes:
                raise GatewayUnreachable("gateway answer too large", url=str(url), status=status)
            if status == 200:
                return data
            if status == 429 or status >= 500:
                raise GatewayUnreachable("gateway busy or failing", status=status, retry_after_s=retry_after)
            problem = _problem(data)
            code = str(problem.get("code", "unknown"))
            server_ms = problem.get("server_time_ms")
            server_ms = server_ms if isinstance(server_ms, int) and not isinstance(server_ms, bool) else None
            if attempt == 0 and code == "clock-skew" and server_ms is not None:
                self.clock_offset_ms = server_ms - time.time_ns() // 1_000_000
                log.warning("usb.gateway.clock_corrected", offset_ms=self.clock_offset_ms)
                continue
            if attempt == 0 and code == "replay":
                continue
            raise GatewayRefused(
                f"gateway refused: {str(problem.get('detail', ''))[:200]}",
                status=status,
                problem_code=code[:64],
                server_time_ms=server_ms,
            )
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    async def post_batch(self, envelope: bytes) -> BatchAnswer:
        """POST /v1/batches; the receipt is returned unverified (the spool verifies it)."""
        data = await self._request("POST", "/v1/batches", envelope, BATCH_TYPE, _MAX_ANSWER_BYTES)
        try:
            answer = json.loads(data)
            receipt = base64.b64decode(answer["receipt"], validate=True)
            return BatchAnswer(receipt=receipt, duplicate=bool(answer.get("duplicate")), road=str(answer["road"]))
        except (ValueError, KeyError, TypeError) as e:
            raise BadReceipt("gateway answer carries no readable receipt") from e

    async def post_custody(self, record: bytes) -> None:
        await self._request("POST", "/v1/custody", record, CUSTODY_TYPE, _MAX_ANSWER_BYTES)

    async def get_registry(self) -> bytes:
        return await self._request("GET", "/v1/registry", None, None, _MAX_SNAPSHOT_BYTES)


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, or its first ``max_bytes + 1`` bytes if it is longer (the caller refuses those)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            break
    return b"".join(chunks)


def _problem(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def probe(client: GatewayClient) -> bool:
    """True if the gateway accepts this station's signature right now (a signed GET /v1/registry)."""
    try:
        await client.get_registry()
    except GatewayRefused as e:
        return e.status not in (401, 403)
    except GatewayUnreachable:
        return True
    return True
