"""Participation certificates around ``wire.certificate``: the key ceremony, issuing, verifying input.

A certificate key directory (made by ``sanaq-keys certificate-key create`` or
``rotate``, installed on the issuing service; 0700)::

    certificate.key        Ed25519 private key, PEM PKCS8 (0600; encrypted when a passphrase was given)
    certificate-key.doc    the root-signed certificate-key document (docs/protocol.md 7.4)

``CertificateIssuer.load`` refuses a directory whose document does not verify
under the service's root key or whose private key is not the certified one.
``read_carrier`` takes what a person hands a verifier (the binary carrier, or
the QR text, surrounding whitespace allowed) and ``check`` turns it into a
``Verdict``: valid, invalid with the protocol's error code, or revoked.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from nacl.signing import SigningKey

from wire.certificate import (
    MAX_CERTIFICATE_DOCUMENT_BYTES,
    MAX_CERTIFICATE_TEXT,
    TEXT_PREFIX,
    Certificate,
    CertificateKey,
    carrier_from_text,
    make_certificate,
    make_certificate_key,
    parse_certificate_key,
    verify_certificate,
)
from wire.errors import DecodeError, OversizeError, RevokedKeyError, WireError

from .authority import Authority
from .errors import AuthorityError, BundleError, StorageError
from .files import atomic_write, fsync_dir, load_signing_key, save_signing_key
from .records import CertificateKeyRecord

__all__ = [
    "KEY_DOCUMENT",
    "MAX_INPUT_BYTES",
    "PRIVATE_KEY",
    "CertificateIssuer",
    "Verdict",
    "certificate_day",
    "certificate_road",
    "certificate_subject",
    "check",
    "create_certificate_key",
    "read_carrier",
    "read_input",
]

MAX_INPUT_BYTES = MAX_CERTIFICATE_TEXT + 64  # the text form and a little whitespace; a binary carrier is smaller
PRIVATE_KEY = "certificate.key"
KEY_DOCUMENT = "certificate-key.doc"
_log = structlog.get_logger("keys.certificates")


def certificate_road(receipt_road: str) -> str:
    """The certificate's road for a receipt's road: online -> tablet, station:* -> usb, web:* -> web."""
    if receipt_road == "online":
        return "tablet"
    if receipt_road.startswith("station:"):
        return "usb"
    if receipt_road.startswith("web:"):
        return "web"
    raise DecodeError("unknown receipt road", road=receipt_road)


def certificate_day(received_at_ms: int, utc_offset_minutes: int) -> str:
    """The calendar day, in census local time (UTC + offset), of a receipt time."""
    local = datetime.fromtimestamp(received_at_ms / 1000, tz=UTC) + timedelta(minutes=utc_offset_minutes)
    return local.date().isoformat()


def certificate_subject(list_entry: str | None, sheet_id: str | None) -> str:
    """``entry:<list entry>`` when the sheet names one, else ``sheet:<sheet id>``."""
    if list_entry:
        return f"entry:{list_entry}"
    if sheet_id:
        return f"sheet:{sheet_id}"
    raise DecodeError("a certificate needs a list entry or a sheet id")


@dataclass(frozen=True, slots=True)
class CertificateIssuer:
    """An issuing service's certificate key with its root-signed document."""

    signing_key: SigningKey
    key: CertificateKey
    root_public_key: bytes

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], root_public_key: bytes, *, passphrase: bytes | None = None
    ) -> CertificateIssuer:
        d = Path(directory)
        try:
            with (d / KEY_DOCUMENT).open("rb") as fh:
                document = fh.read(MAX_CERTIFICATE_DOCUMENT_BYTES + 1)  # longer is refused as oversize below
        except OSError as e:
            raise StorageError("cannot read the certificate-key document", path=str(d / KEY_DOCUMENT),
                               error=e.strerror) from e
        try:
            key = parse_certificate_key(document, root_public_key)
        except WireError as e:
            raise BundleError("certificate-key document does not verify under the root key",
                              path=str(d / KEY_DOCUMENT), reason=e.code) from e
        signing = load_signing_key(d / PRIVATE_KEY, passphrase)
        if bytes(signing.verify_key) != key.public_key:
            raise BundleError("certificate.key is not the key its document certifies", path=str(d))
        return cls(signing, key, root_public_key)

    @property
    def census(self) -> str:
        return self.key.census

    def issue(self, *, subject: str, day: str, road: str) -> bytes:
        """The carrier (key document || certificate) for one respondent."""
        return self.key.raw + make_certificate(census=self.key.census, subject=subject, day=day, road=road,
                                               certificate_key=self.signing_key)

    def issue_checked(self, *, subject: str, day: str, road: str) -> Certificate:
        """Issue, then verify what was issued under the root key: nothing unverifiable is ever printed."""
        return verify_certificate(self.issue(subject=subject, day=day, road=road), self.root_public_key)


def create_certificate_key(
    a: Authority, out: str | os.PathLike[str], *, issuer: str, census: str, now_ms: int,
    key_passphrase: bytes | None = None,
) -> CertificateKeyRecord:
    """Make a certificate key for ``issuer``, have the root certify it, write its directory, record it.

    The issuer's previous active key (if any) becomes ``retired``: rotation.
    ``out`` must not exist; it is built beside itself and renamed into place.
    """
    target = Path(out)
    if target.exists():
        raise AuthorityError("output directory already exists", path=str(target))
    root = a.root_signing_key()
    key = SigningKey.generate()
    document = make_certificate_key(census=census, issuer=issuer, public_key=bytes(key.verify_key),
                                    issued_at_ms=now_ms, root_key=root)
    staging = target.parent / f".{target.name}.new-{secrets.token_hex(6)}"
    try:
        staging.mkdir(mode=0o700)
        save_signing_key(staging / PRIVATE_KEY, key, key_passphrase)
        atomic_write(staging / KEY_DOCUMENT, document, mode=0o644)
        record = a.registry.add_certificate_key(issuer=issuer, census=census, public_key=bytes(key.verify_key),
                                                now_ms=now_ms)
        os.rename(staging, target)
        fsync_dir(target.parent)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError("cannot write the certificate key directory", path=str(target), error=e.strerror) from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log.info("certificates.key.created", issuer=issuer, key_id=record.key_id)
    return record


def read_carrier(raw: bytes) -> bytes:
    """A carrier from what a verifier was handed: the binary carrier, or its text (whitespace trimmed)."""
    if raw.startswith(b"SNQK"):
        return raw
    if len(raw) > MAX_INPUT_BYTES:
        raise OversizeError("certificate input too large", size=len(raw), limit=MAX_INPUT_BYTES)
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise DecodeError("neither a certificate file nor certificate text") from e
    return carrier_from_text(text)


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status`` is valid, invalid or revoked; ``code`` the protocol error code when not valid."""

    status: str
    code: str | None
    certificate: Certificate | None
    revocation_checked: bool


def check(raw: bytes, root_public_key: bytes, revoked: Collection[bytes] | None) -> Verdict:
    """Verify what a person handed over; ``revoked`` None means no snapshot was available."""
    try:
        carrier = read_carrier(raw)
        cert = verify_certificate(carrier, root_public_key, revoked=revoked or frozenset())
    except RevokedKeyError:
        shown = verify_certificate(read_carrier(raw), root_public_key)
        return Verdict("revoked", RevokedKeyError.code, shown, True)
    except WireError as e:
        return Verdict("invalid", e.code, None, revoked is not None)
    return Verdict("valid", None, cert, revoked is not None)


def read_input(value: str) -> bytes:
    """The CLI's argument: the QR text itself when it starts with the prefix, else a file to read.

    At most ``MAX_INPUT_BYTES + 1`` bytes are read: anything longer is refused as ``oversize`` by
    the verification itself, so a huge file costs nothing.
    """
    if value.strip().startswith(TEXT_PREFIX):
        return value.encode("utf-8")
    with Path(value).open("rb") as fh:
        return fh.read(MAX_INPUT_BYTES + 1)
