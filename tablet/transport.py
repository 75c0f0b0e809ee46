"""Signed HTTP exchanges with the gateway: one request in, one ``Answer`` or ``LinkError`` out.

``Transport`` knows the URL layout, the RFC 9421 profile (``wire.httpsig``:
fresh ``created`` and nonce on every attempt) and how to read a capped
answer. It does not retry and does not judge answers: the sync engine decides
what a 429 or a ``clock-skew`` means. ``created`` is the local clock plus
``offset_ms``, the correction learned from a ``clock-skew`` problem.

TLS: an ``https://`` gateway is reached only through an SSL context that
trusts the census CA alone (``keys.tls.client_ssl_context``); plain
``http://`` is for loopback tests and must be asked for by URL.

Failures below HTTP are ``LinkError`` with ``kind``:

* ``network`` refused, reset, timed out, disconnected: worth retrying;
* ``tls``     the certificate did not chain to the census CA (or the handshake
  failed): retrying will not help, a person must look.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp
from nacl.signing import SigningKey
from yarl import URL

from keys.errors import KeysError
from keys.tls import client_ssl_context
from wire import httpsig

from .errors import SyncError

__all__ = ["BATCH_TYPE", "SNAPSHOT_TYPE", "Answer", "LinkError", "Transport", "gateway_ssl", "nonce_from"]

BATCH_TYPE = "application/vnd.sanaq.batch"
SNAPSHOT_TYPE = "application/vnd.sanaq.snapshot"
_CODE = re.compile(r"[a-z][a-z0-9-]{0,39}")


class LinkError(Exception):
    """No HTTP answer: ``kind`` is ``network`` (retry) or ``tls`` (stop)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer; for a refusal ``code`` is the problem's code (or ``http-<status>`` if it had none)."""

    status: int
    body: bytes
    code: str | None
    detail: str
    server_time_ms: int | None
    retry_after_s: float | None

    def json(self) -> object:
        """The body as JSON, or ``None`` if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def gateway_ssl(url: str, ca_cert_path: Path | None) -> ssl.SSLContext | None:
    """The client SSL context for ``url``: census CA only for https, ``None`` for plain http."""
    scheme = URL(url).scheme
    if scheme == "http":
        return None
    if scheme != "https":
        raise SyncError("gateway URL must be https:// (or http:// for loopback tests)", url=url)
    if ca_cert_path is None:
        raise SyncError("an https gateway needs the census CA certificate to pin", url=url)
    try:
        return client_ssl_context(ca_cert_path)
    except KeysError as e:
        raise SyncError(f"census CA unusable ({e.code})", path=str(ca_cert_path)) from e


def nonce_from(token: Callable[[int], bytes]) -> str:
    """A request nonce: 18 random bytes as 24 base64url characters."""
    return base64.urlsafe_b64encode(token(18)).decode("ascii")


class Transport:
    """Signed requests to one gateway with one key, over a caller-owned ``aiohttp.ClientSession``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateway_url: str,
        signing_key: SigningKey,
        *,
        clock: Callable[[], int],
        token: Callable[[int], bytes],
        timeout: aiohttp.ClientTimeout,
        max_answer_bytes: int,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        base = URL(gateway_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise SyncError("gateway URL must be http(s)://host[:port][/path]", url=gateway_url)
        self._session = session
        self._base = base
        self._prefix = base.raw_path.rstrip("/")
        self._authority = base.host if base.is_default_port() else f"{base.host}:{base.port}"
        self._key = signing_key
        self._clock = clock
        self._token = token
        self._timeout = timeout
        self._max_answer_bytes = max_answer_bytes
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else False
        self.offset_ms = 0

    def now_ms(self) -> int:
        """Local clock corrected by what the gateway taught us."""
        return self._clock() + self.offset_ms

    def learn_offset(self, server_time_ms: int) -> int:
        """Take the server's time from a ``clock-skew`` answer as the truth; returns the new offset."""
        self.offset_ms = server_time_ms - self._clock()
        return self.offset_ms

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None, *,
        signed: bool = True, query: str = "",
    ) -> Answer:
        """One request; ``query`` (raw, without ``?``) is sent and signed as ``@query`` (GET only)."""
        full_path = self._prefix + path
        url = self._base.with_path(full_path, encoded=True)
        if query:
            url = url.with_query(query)
        headers: dict[str, str] = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if signed:
            headers.update(httpsig.sign_request(
                method=method, authority=self._authority, path=full_path, content_type=content_type, body=body,
                signing_key=self._key, created=self.now_ms() // 1000, nonce=nonce_from(self._token),
                scheme=self._base.scheme, query=query,
            ))
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False, ssl=self._ssl
            ) as resp:
                data = await _read_capped(resp, self._max_answer_bytes)
                return _answer(resp.status, resp.headers, data)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError) as e:
            raise LinkError("tls", f"TLS with the gateway failed: {type(e).__name__}") from e
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
            raise LinkError("network", f"{type(e).__name__}: {e}".strip()) from e


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    if resp.content_length is not None and resp.content_length > cap:
        raise aiohttp.ClientPayloadError(f"answer larger than {cap} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > cap:
            raise aiohttp.ClientPayloadError(f"answer larger than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    if 200 <= status < 300:
        return Answer(status, body, None, "", None, None)
    code, detail, server_time = f"http-{status}", "", None
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        if isinstance(problem.get("code"), str) and _CODE.fullmatch(problem["code"]):
            code = problem["code"]
        if isinstance(problem.get("detail"), str):
            detail = " ".join(problem["detail"].split())[:300]
        value = problem.get("server_time_ms")
        if type(value) is int and value > 0:
            server_time = value
    return Answer(status, body, code, detail, server_time, _retry_after(headers))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds: delta-seconds, or an HTTP-date measured against the answer's Date."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
        now = parsedate_to_datetime(headers["Date"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())
