"""``SignedGatewayClient``: every request signed with the client's Ed25519 key (the RFC 9421 profile).

TLS is pinned by the caller's ``ssl_context`` (the census CA); plain ``http://``
is accepted for loopback tests. Answers become bytes / ``BatchAnswer`` or one
of the errors of ``gwclient.errors``:

* 429 and 5xx are ``GatewayUnreachable`` with ``retry_after_s`` from the
  ``Retry-After`` header, read in both forms HTTP allows (delta-seconds, or an
  HTTP-date measured against the answer's ``Date``), capped at one day;
* a ``clock-skew`` refusal teaches the client the offset to the gateway's
  ``server_time_ms`` and the request is signed again, once; so is a ``replay``
  refusal (a fresh nonce fixes it);
* any other 4xx is ``GatewayRefused`` with the problem code.

The receipt inside a batch answer is returned unverified: the caller verifies
it against its trusted gateway keys before it forgets anything.
"""

from __future__ import annotations

import base64
import email.utils
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

from .errors import BadAnswer, GatewayRefused, GatewayUnreachable

__all__ = ["BATCH_TYPE", "CUSTODY_TYPE", "BatchAnswer", "SignedGatewayClient", "parse_retry_after"]

log = structlog.get_logger("gwclient")

BATCH_TYPE = "application/vnd.sanaq.batch"
CUSTODY_TYPE = "application/vnd.sanaq.custody"
_MAX_ANSWER_BYTES = 64 * 1024
_MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
_MAX_CODES_BYTES = 1024 * 1024  # 1000 changes of ~250 bytes, base64
MAX_RETRY_AFTER_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    receipt: bytes
    duplicate: bool
    road: str


def parse_retry_after(value: str | None, date: str | None = None, *, now_s: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), capped; None if absent or bad.

    An HTTP-date is measured against the answer's ``Date`` header when it has
    one (so a client with a wrong clock still waits the server's interval),
    else against ``now_s``.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text), MAX_RETRY_AFTER_S))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    base = now_s if now_s is not None else time.time()
    if date is not None:
        try:
            sent = email.utils.parsedate_to_datetime(date.strip())
            if sent.tzinfo is not None:
                base = sent.timestamp()
        except (TypeError, ValueError):
            pass
    return float(min(max(when.timestamp() - base, 0.0), MAX_RETRY_AFTER_S))


class SignedGatewayClient:
    """One aiohttp session to one gateway; use as ``async with SignedGatewayClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        signing_key: SigningKey,
        *,
        ssl_context: ssl.SSLContext | None,
        timeout_s: float = 30.0,
        connections: int = 8,
        log_area: str = "gwclient",
    ) -> None:
        url = URL(base_url.rstrip("/"))
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError("gateway URL must be https://host[:port][/prefix]")
        self._base = url
        self._key = signing_key
        self._ssl = ssl_context if url.scheme == "https" else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 10.0))
        self._connections = connections
        self._area = log_area
        self._session: aiohttp.ClientSession | None = None
        self.clock_offset_ms = 0

    async def __aenter__(self) -> SignedGatewayClient:
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False, limit=self._connections)
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

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
        max_bytes: int = _MAX_ANSWER_BYTES,
    ) -> bytes:
        """A signed request; the 200 answer's body (at most ``max_bytes``) or an error of ``gwclient.errors``."""
        if self._session is None:
            raise RuntimeError("SignedGatewayClient used outside 'async with'")
        url = self._base.with_path(self._base.path.rstrip("/") + path, encoded=False)
        for attempt in range(2):
            headers = self._headers(method, url, body, content_type)
            try:
                async with self._session.request(method, url, data=body, headers=headers) as resp:
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), resp.headers.get("Date"))
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
                log.warning(f"{self._area}.gateway.clock_corrected", offset_ms=self.clock_offset_ms)
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
        """POST /v1/batches; the receipt comes back unverified (the caller verifies it)."""
        data = await self.request("POST", "/v1/batches", envelope, BATCH_TYPE)
        try:
            answer = json.loads(data)
            receipt = base64.b64decode(answer["receipt"], validate=True)
            return BatchAnswer(receipt=receipt, duplicate=bool(answer.get("duplicate")), road=str(answer["road"]))
        except (ValueError, KeyError, TypeError) as e:
            raise BadAnswer("gateway answer carries no readable receipt") from e

    async def post_custody(self, record: bytes) -> None:
        await self.request("POST", "/v1/custody", record, CUSTODY_TYPE)

    async def get_registry(self) -> bytes:
        return await self.request("GET", "/v1/registry", None, None, _MAX_SNAPSHOT_BYTES)

    async def get_state(self, device_id: str) -> bytes:
        """The signed sync-state document of ``device_id`` (base64 member ``sync_state`` of the answer)."""
        data = await self.request("GET", f"/v1/devices/{device_id}/state")
        try:
            return base64.b64decode(json.loads(data)["sync_state"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise BadAnswer("gateway answer carries no readable sync state") from e


    async def get_access_codes(self, since: int) -> bytes:
        """The signed access-codes document of the changes after ``since`` (a web service only)."""
        data = await self.request("GET", f"/v1/web/access-codes/since/{since}", None, None, _MAX_CODES_BYTES)
        try:
            return base64.b64decode(json.loads(data)["access_codes"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise BadAnswer("gateway answer carries no readable access codes") from e


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
