"""The attacker's workbench: envelopes and request signatures built byte by byte, not through the honest API.

Everything here is built for real -- real libsodium sealed boxes, real Ed25519
and HMAC signatures over real RFC 9421 signature bases -- so that a refusal
proves the gateway checked the property, not that a helper refused to build
the input.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from wire import canonical, httpsig, key_id, sealing
from wire.envelope import SIGN_LABEL, BatchHeader
from wire.structured_fields import InnerList, Item, Params

__all__ = ["L", "ForgedRequest", "forge_envelope", "malleate", "nonce", "plaintext", "with_signature"]

# Order of the Ed25519 group: S and S + L verify the same under a lax verifier.
L = 2**252 + 27742317777372353535851937790883648493


def nonce() -> str:
    return base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")


def plaintext(device_id: str, seq: int, sheets: list[Any]) -> bytes:
    return canonical.encode({"device_id": device_id, "seq": seq, "sheets": sheets, "v": 1})


def forge_envelope(
    *,
    device_id: str,
    seq: int,
    body: bytes,
    record_count: int,
    key: SigningKey,
    seal_to: bytes,
    name_recipient: bytes | None = None,
    schema: str = "census-sheet/1",
    sealed_at_ms: int | None = None,
) -> bytes:
    """Seal ``body`` (any bytes) to ``seal_to`` and sign the header with ``key``; header says what it is told."""
    ciphertext = sealing.seal(body, seal_to, os.urandom(32))
    header = BatchHeader(
        device_id=device_id,
        seq=seq,
        sealed_at_ms=sealed_at_ms or time.time_ns() // 1_000_000,
        record_count=record_count,
        schema=schema,
        recipient_key_id=key_id(name_recipient or seal_to),
        ciphertext_hash=hashlib.sha256(ciphertext).digest(),
        ciphertext_len=len(ciphertext),
    )
    signed = header.encode()
    return signed + ciphertext + key.sign(SIGN_LABEL + signed).signature


def with_signature(envelope: bytes, signature: bytes) -> bytes:
    return envelope[:-64] + signature


def malleate(signature: bytes) -> bytes:
    """``R || S+L``: the same signature in a non-canonical encoding (S >= L)."""
    s = int.from_bytes(signature[32:], "little")
    return signature[:32] + (s + L).to_bytes(32, "little")


def _ed25519(key: SigningKey) -> Callable[[bytes], bytes]:
    return lambda base: bytes(key.sign(base).signature)


@dataclass
class ForgedRequest:
    """An RFC 9421 request signature with every choice open to the attacker.

    ``components`` and ``params`` are what ``Signature-Input`` declares;
    ``signer(base)`` makes the signature bytes over the real signature base of
    those components; ``extra_inputs``/``extra_signatures`` add members (a
    second signature); ``label`` renames the member.
    """

    method: str
    url: str
    body: bytes
    key: SigningKey
    content_type: str | None = "application/vnd.sanaq.batch"
    components: tuple[str, ...] | None = None
    params: Params | None = None
    label: str = "sanaq"
    signer: Callable[[bytes], bytes] | None = None
    authority: str | None = None
    path: str | None = None
    extra_inputs: dict[str, InnerList] = field(default_factory=dict)
    extra_signatures: dict[str, Item] = field(default_factory=dict)
    digest: str | None = None

    def default_params(self, *, created: int | None = None, nonce_value: str | None = None) -> Params:
        return (
            ("created", created if created is not None else int(time.time())),
            ("keyid", key_id(bytes(self.key.verify_key)).hex()),
            ("nonce", nonce_value or nonce()),
            ("tag", httpsig.TAG),
        )

    def headers(self) -> dict[str, str]:
        parsed = aiohttp.client.URL(self.url)
        authority = self.authority or (parsed.host if parsed.is_default_port() else f"{parsed.host}:{parsed.port}")
        path = self.path or parsed.raw_path
        with_body = self.method in ("POST", "PUT")
        components = self.components or (httpsig.COMPONENTS_WITH_BODY if with_body else httpsig.COMPONENTS_WITHOUT_BODY)
        fields: dict[str, str] = {}
        out: dict[str, str] = {}
        if with_body:
            out["Content-Digest"] = fields["content-digest"] = self.digest or httpsig.content_digest(self.body)
            if self.content_type is not None:
                out["Content-Type"] = fields["content-type"] = self.content_type
        covered = InnerList(tuple(Item(c) for c in components), self.params or self.default_params())
        request = httpsig.HttpRequest(method=self.method, authority=authority, path=path, fields=fields, scheme="http")
        base = httpsig.signature_base(request, covered)
        signature = (self.signer or _ed25519(self.key))(base)
        out["Signature-Input"] = httpsig.serialize_dictionary({self.label: covered, **self.extra_inputs})
        out["Signature"] = httpsig.serialize_dictionary({self.label: Item(signature), **self.extra_signatures})
        return out


def hmac_signer(key: bytes, digest: str = "sha256") -> Callable[[bytes], bytes]:
    return lambda base: hmac.new(key, base, digest).digest()
