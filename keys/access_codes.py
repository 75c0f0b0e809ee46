"""Access codes of online self-enumeration: the format, its check character, and the keyed hash that is stored.

A code is 19 random symbols and one check symbol from a 32-symbol alphabet
without look-alikes (no 0/O, 1/I): 95 random bits. It is printed and read
aloud in five groups of four (``7KQM-2XHD-PW9C-4NTF-R3E8``). The check symbol
is Luhn mod 32 over the 19 others, so a single mistyped symbol and most
swapped neighbours are caught before any lookup (and before any throttling
counts the attempt as a guess).

Input is forgiving in ways that cannot change the code: case, spaces and
hyphens are ignored, and the ten Cyrillic capitals that look like Latin
ones (A, Ve, Ie, Ka, Em, En, Er, Es, Te, Ha, as typed on a Kazakh or
Russian keyboard) are read as the Latin letters they look like. Anything else is ``AccessCodeError``.

Codes are never stored: the authority and the web service keep
``code_hash(pepper, code)`` (HMAC-SHA-256 under a secret pepper), and a
draft key is derived from the code with its own label, so a copy of the
database opens nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import AccessCodeError

__all__ = [
    "ALPHABET",
    "CODE_SYMBOLS",
    "AccessCodeError",
    "code_hash",
    "derive_draft_key",
    "format_code",
    "mint_code",
    "normalise_code",
    "pepper_id",
]

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_RANDOM_SYMBOLS = 19
CODE_SYMBOLS = _RANDOM_SYMBOLS + 1
_GROUP = 4
_MAX_INPUT = 64
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_CYRILLIC = str.maketrans("\u0410\u0412\u0415\u041a\u041c\u041d\u0420\u0421\u0422\u0425", "ABEKMHPCTX")
_HASH_LABEL = b"sanaq-selfenum/v1/access-code\x00"
_DRAFT_LABEL = b"sanaq-selfenum/v1/draft-key\x00"
_PEPPER_ID_LABEL = b"sanaq-selfenum/v1/pepper-id\x00"


def _check_symbol(symbols: str) -> str:
    """Luhn mod 32: from the right, every second value doubled and folded into base 32."""
    total = 0
    for pos, ch in enumerate(reversed(symbols)):
        value = _INDEX[ch]
        if pos % 2 == 0:
            value *= 2
            value = value // 32 + value % 32
        total += value
    return ALPHABET[(32 - total % 32) % 32]


def mint_code() -> str:
    """A new code (20 symbols, no separators) from the operating system's CSPRNG."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(_RANDOM_SYMBOLS))
    return body + _check_symbol(body)


def format_code(code: str) -> str:
    """Groups of four for printing and reading aloud."""
    return "-".join(code[i : i + _GROUP] for i in range(0, len(code), _GROUP))


def normalise_code(text: str) -> str:
    """The canonical 20 symbols of a typed code, or ``AccessCodeError`` (no detail that helps a guesser)."""
    if not isinstance(text, str) or len(text) > _MAX_INPUT:
        raise AccessCodeError("not an access code")
    cleaned = "".join(text.upper().translate(_CYRILLIC).replace("-", " ").split())
    if len(cleaned) != CODE_SYMBOLS or any(c not in _INDEX for c in cleaned):
        raise AccessCodeError("not an access code")
    if not hmac.compare_digest(_check_symbol(cleaned[:-1]), cleaned[-1]):
        raise AccessCodeError("not an access code")
    return cleaned


def code_hash(pepper: bytes, code: str) -> str:
    """The stored form of a (normalised) code: hex HMAC-SHA-256 under the secret pepper."""
    if len(pepper) < 32:
        raise ValueError("the access-code pepper must be at least 32 bytes")
    return hmac.new(pepper, _HASH_LABEL + code.encode("ascii"), hashlib.sha256).hexdigest()


def pepper_id(pepper: bytes) -> str:
    """16 hex characters naming a pepper without revealing it: two holders compare these, never the pepper."""
    return hmac.new(pepper, _PEPPER_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def derive_draft_key(code: str, salt: bytes) -> bytes:
    """The 32-byte key a respondent's draft is sealed under (HKDF-SHA-256 of the 95-bit code, its own label).

    Only someone holding the code derives it; the service keeps the salt, never the key.
    """
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_DRAFT_LABEL)
    return hkdf.derive(code.encode("ascii"))
