"""Participation certificates: a root-certified certificate key signs "this person was counted".

Two signed documents (``docs/protocol.md`` section 7.4) travel together as one
**carrier**: the certificate-key document (kind ``certificate-key``, signed by
the authority root key) immediately followed by the certificate (kind
``certificate``, signed by the key the first one certifies)::

    certificate-key body: v, census, issuer, key_id, public_key, issued_at_ms
    certificate body:     v, census, subject, day, road

``subject`` is ``entry:<first-stage list entry>`` or ``sheet:<sheet id>``;
``day`` a calendar date ``YYYY-MM-DD``; ``road`` ``tablet``, ``usb`` or ``web``.
No name, birth date or institution kind is ever in a certificate.

A carrier is printed as text (``sanaq-cert:`` + base64url without padding) in
a QR code. ``verify_certificate`` needs only the root public key and the set
of revoked certificate key ids (snapshot member ``revoked_certificate_keys``);
it reports the first failure as a ``WireError`` whose ``code`` is one of
section 14's, ``revoked`` last, so that ``revoked`` always means "genuine, but
its key was withdrawn".
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from nacl.signing import SigningKey

from . import _fields as f
from ._binary import Reader
from .documents import DocKind, decode_document, sign_document, verify_document
from .errors import BindingError, DecodeError, OversizeError, RevokedKeyError, TruncatedError, UnknownKeyError
from .keyids import KEY_ID_LEN, key_id

__all__ = [
    "MAX_CARRIER_BYTES",
    "MAX_CERTIFICATE_DOCUMENT_BYTES",
    "MAX_CERTIFICATE_TEXT",
    "ROADS",
    "TEXT_PREFIX",
    "Certificate",
    "CertificateKey",
    "carrier_from_text",
    "carrier_to_text",
    "check_subject",
    "make_certificate",
    "make_certificate_key",
    "parse_certificate_key",
    "verify_certificate",
]

MAX_CERTIFICATE_DOCUMENT_BYTES = 1024
MAX_CARRIER_BYTES = 2 * MAX_CERTIFICATE_DOCUMENT_BYTES
MAX_CERTIFICATE_TEXT = 4096
TEXT_PREFIX = "sanaq-cert:"
ROADS = ("tablet", "usb", "web")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CENSUS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_SUBJECT = re.compile(
    r"entry:[A-Z]{2}-[0-9]{6}/[0-9]{5}"
    r"|sheet:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_KEY_MEMBERS = {"v", "census", "issuer", "key_id", "public_key", "issued_at_ms"}
_CERT_MEMBERS = {"v", "census", "subject", "day", "road"}


@dataclass(frozen=True, slots=True)
class CertificateKey:
    census: str
    issuer: str
    key_id: bytes
    public_key: bytes
    issued_at_ms: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class Certificate:
    """A verified certificate: exactly what it shows, and the key that signed it."""

    census: str
    subject: str
    day: str
    road: str
    key: CertificateKey
    raw: bytes  # the whole carrier

    @property
    def subject_kind(self) -> str:
        return self.subject.split(":", 1)[0]

    @property
    def subject_id(self) -> str:
        return self.subject.split(":", 1)[1]


def _census(value: object) -> str:
    if not isinstance(value, str) or not _CENSUS.fullmatch(value):
        raise DecodeError("census id does not match [A-Za-z0-9][A-Za-z0-9._-]{0,31}")
    return value


def check_subject(value: object) -> str:
    """``entry:<list entry>`` or ``sheet:<sheet id>`` exactly, else ``DecodeError``."""
    if not isinstance(value, str) or not _SUBJECT.fullmatch(value):
        raise DecodeError("certificate subject is neither entry:<list entry> nor sheet:<sheet id>")
    return value


def _day(value: object) -> str:
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise DecodeError("certificate day must be YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError as e:
        raise DecodeError("certificate day is not a calendar date") from e
    return value


def _road(value: object) -> str:
    if value not in ROADS:
        raise DecodeError("certificate road must be tablet, usb or web")
    return str(value)


def make_certificate_key(
    *, census: str, issuer: str, public_key: bytes, issued_at_ms: int, root_key: SigningKey
) -> bytes:
    """The root's certification of a certificate key (kind ``certificate-key``)."""
    if not isinstance(issuer, str) or not _ID.fullmatch(issuer):
        raise DecodeError("certificate key issuer does not match the device id pattern")
    body = {
        "v": 1,
        "census": _census(census),
        "issuer": issuer,
        "key_id": key_id(public_key).hex(),
        "public_key": public_key.hex(),
        "issued_at_ms": issued_at_ms,
    }
    return sign_document(DocKind.CERTIFICATE_KEY, body, root_key)


def make_certificate(*, census: str, subject: str, day: str, road: str, certificate_key: SigningKey) -> bytes:
    """A certificate document (kind ``certificate``); pair it with its key document for a carrier."""
    body = {"v": 1, "census": _census(census), "subject": check_subject(subject), "day": _day(day),
            "road": _road(road)}
    return sign_document(DocKind.CERTIFICATE, body, certificate_key)


def parse_certificate_key(data: bytes, root_public_key: bytes) -> CertificateKey:
    """Decode and verify a certificate-key document against the root key."""
    doc = decode_document(data, DocKind.CERTIFICATE_KEY, max_bytes=MAX_CERTIFICATE_DOCUMENT_BYTES)
    verify_document(doc, {key_id(root_public_key): root_public_key})
    body = f.exact_members(doc.body, _KEY_MEMBERS, "certificate key")
    public = f.get_hex(body, "public_key", 32)
    kid = f.get_hex(body, "key_id", KEY_ID_LEN)
    if kid != key_id(public):
        raise DecodeError("certificate key id does not match its public key")
    issuer = body["issuer"]
    if not isinstance(issuer, str) or not _ID.fullmatch(issuer):
        raise DecodeError("certificate key issuer does not match the device id pattern")
    return CertificateKey(
        census=_census(body["census"]),
        issuer=issuer,
        key_id=kid,
        public_key=public,
        issued_at_ms=f.get_int(body, "issued_at_ms"),
        raw=doc.raw,
    )


def _split(carrier: bytes) -> tuple[bytes, bytes]:
    if len(carrier) > MAX_CARRIER_BYTES:
        raise OversizeError("certificate too large", size=len(carrier), limit=MAX_CARRIER_BYTES)
    r = Reader(carrier, "certificate")
    r.take(4 + 1 + KEY_ID_LEN)
    body_len = r.u32()
    if body_len > MAX_CERTIFICATE_DOCUMENT_BYTES:
        raise OversizeError("certificate key body too large", size=body_len, limit=MAX_CERTIFICATE_DOCUMENT_BYTES)
    end = 25 + body_len + 64
    if len(carrier) < end:
        raise TruncatedError("certificate truncated", offset=len(carrier), wanted=end)
    return carrier[:end], carrier[end:]


def verify_certificate(
    carrier: bytes, root_public_key: bytes, *, revoked: Collection[bytes] = frozenset()
) -> Certificate:
    """Verify a carrier (key document || certificate); ``revoked`` holds revoked certificate key ids.

    Order (first failure wins): framing of both documents; the key document's
    root signature and members; the certificate's signer is the certified key
    (``unknown-key``) and its signature; its members; same census
    (``binding-mismatch``); last, the key is not revoked (``revoked``).
    """
    key_part, cert_part = _split(carrier)
    key_doc = decode_document(key_part, DocKind.CERTIFICATE_KEY, max_bytes=MAX_CERTIFICATE_DOCUMENT_BYTES)
    cert_doc = decode_document(cert_part, DocKind.CERTIFICATE, max_bytes=MAX_CERTIFICATE_DOCUMENT_BYTES)
    key = parse_certificate_key(key_doc.raw, root_public_key)
    if cert_doc.signer_key_id != key.key_id:
        raise UnknownKeyError("certificate not signed by the key certified with it",
                              key_id=cert_doc.signer_key_id.hex())
    verify_document(cert_doc, {key.key_id: key.public_key})
    body = f.exact_members(cert_doc.body, _CERT_MEMBERS, "certificate")
    census = _census(body["census"])
    cert = Certificate(
        census=census,
        subject=check_subject(body["subject"]),
        day=_day(body["day"]),
        road=_road(body["road"]),
        key=key,
        raw=bytes(carrier),
    )
    if census != key.census:
        raise BindingError("certificate names another census than its key", census=census)
    if key.key_id in revoked:
        raise RevokedKeyError("certificate key is revoked", key_id=key.key_id.hex())
    return cert


def carrier_to_text(carrier: bytes) -> str:
    """The QR text: ``sanaq-cert:`` and the carrier in base64url without padding."""
    return TEXT_PREFIX + base64.urlsafe_b64encode(carrier).rstrip(b"=").decode("ascii")


def carrier_from_text(text: str) -> bytes:
    """Strict inverse of ``carrier_to_text`` (no whitespace, no padding, one encoding)."""
    if len(text) > MAX_CERTIFICATE_TEXT:
        raise OversizeError("certificate text too long", size=len(text), limit=MAX_CERTIFICATE_TEXT)
    if not text.startswith(TEXT_PREFIX):
        raise DecodeError("certificate text does not start with " + TEXT_PREFIX)
    payload = text[len(TEXT_PREFIX):]
    if not _B64URL.fullmatch(payload) or len(payload) % 4 == 1:
        raise DecodeError("certificate text is not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError) as e:
        raise DecodeError("certificate text is not unpadded base64url") from e
    if carrier_to_text(data) != text:
        raise DecodeError("certificate text is not in its one canonical encoding")
    return data
