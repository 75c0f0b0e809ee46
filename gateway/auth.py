"""Request authentication: the RFC 9421 profile checked against the current registry.

``authenticate`` returns the ``Signer`` and the request's nonce; it does not
record the nonce (the caller does, in the same store transaction as the
request's effect where there is one).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from wire import httpsig
from wire.errors import RevokedKeyError

from .store import NonceUse
from .trust import Signer, Trust

__all__ = ["Authenticated", "announces_body", "authenticate"]


@dataclass(frozen=True, slots=True)
class Authenticated:
    signer: Signer
    created_s: int
    nonce: NonceUse
    body_sha256: bytes | None = None  # from the Content-Digest check: the batch hash of a batch request


def announces_body(request: web.Request) -> bool:
    """The request's framing announces a body: ``Transfer-Encoding``, or ``Content-Length`` other than 0.

    GET handlers never read a body, so the check cannot rest on the bytes read
    (docs/protocol.md section 13, rule 2: such a GET is ``bad-signature-input``).
    """
    return "Transfer-Encoding" in request.headers or request.content_length not in (None, 0)


def authenticate(request: web.Request, body: bytes, trust: Trust, *, now_ms: int, window_s: int) -> Authenticated:
    """Verify the request signature; raises wire errors (mapped to problems by the caller)."""
    verified = httpsig.parse_and_verify_request(
        method=request.method,
        authority=request.host,
        path=request.rel_url.raw_path,
        query=request.query_string,
        headers=request.headers,
        body=body,
        lookup_key=trust.public_key_for,
        now_s=now_ms // 1000,
        window_s=window_s,
        scheme="https" if request.secure else "http",
        announces_body=announces_body(request),
    )
    signer = trust.signer(verified.key_id)
    if not signer.active:
        raise RevokedKeyError("signer is not in service", signer=signer.ident, key_id=verified.key_id.hex())
    nonce = NonceUse(verified.key_id, verified.nonce, now_ms + 2 * window_s * 1000 + 1000)
    return Authenticated(signer=signer, created_s=verified.created, nonce=nonce, body_sha256=verified.body_sha256)
