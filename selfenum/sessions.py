"""Respondent sessions and CSRF tokens, both held by the browser and sealed by the service.

The session cookie is a SecretBox (key ``cookie.key`` in the state directory,
0600) over ``{code hash, draft key, csrf, expiry, chosen household member}``: the draft key travels
with the respondent and is never written to the service's disk. Before a code
is entered, a CSRF cookie carries a random value and forms carry its HMAC.
Every POST must carry a non-empty token that matches (constant-time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from keys.files import atomic_write

__all__ = ["Session", "SessionBox", "load_or_make_secret"]


@dataclass(frozen=True, slots=True)
class Session:
    code_hash: str
    draft_key: bytes
    csrf: str
    expires_at_ms: int
    entry: str = ""  # a household code: the member whose sheet is being filled ("" until chosen)


def load_or_make_secret(path: Path, size: int = 32) -> bytes:
    """A secret of ``size`` bytes kept in ``path`` (created 0600 on first use)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = os.urandom(size)
        atomic_write(path, data, mode=0o600)
    if len(data) != size:
        raise ValueError(f"{path} must hold exactly {size} bytes")
    return data


class SessionBox:
    def __init__(self, key: bytes) -> None:
        self._box = SecretBox(key)
        self._mac_key = hashlib.sha256(b"sanaq-selfenum/v1/csrf\x00" + key).digest()

    def seal(self, s: Session) -> str:
        body = json.dumps({"h": s.code_hash, "k": base64.b64encode(s.draft_key).decode(), "c": s.csrf,
                           "e": s.expires_at_ms, "n": s.entry}).encode()
        return base64.urlsafe_b64encode(bytes(self._box.encrypt(body))).decode().rstrip("=")

    def open(self, cookie: str | None, *, now_ms: int) -> Session | None:
        """The session in ``cookie``, or None if absent, forged, damaged or expired."""
        if not cookie or len(cookie) > 1024:
            return None
        try:
            raw = self._box.decrypt(base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4)))
            body = json.loads(raw)
            s = Session(str(body["h"]), base64.b64decode(body["k"]), str(body["c"]), int(body["e"]),
                        str(body.get("n", "")))
        except (CryptoError, ValueError, KeyError, TypeError):
            return None
        return s if s.expires_at_ms > now_ms and len(s.draft_key) == 32 else None

    @staticmethod
    def new_csrf() -> str:
        return secrets.token_urlsafe(24)

    def form_token(self, csrf_cookie: str) -> str:
        return hmac.new(self._mac_key, csrf_cookie.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, csrf_cookie: str | None, token: str | None) -> bool:
        """Missing or empty cookie or token is always refused."""
        if not csrf_cookie or not token:
            return False
        return hmac.compare_digest(self.form_token(csrf_cookie), token)
