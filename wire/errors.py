"""The one exception tree of the wire protocol.

Grouped by who is at fault; every error carries a stable ``code`` (the same
string the gateway puts in its problem+json ``code`` member, see
``docs/protocol.md`` section "Error codes") and the facts that identify the
object (device id, seq, key id), never key material or sheet contents::

    CodedError                     shared shape (code, facts) of every package's base
    WireError                      base of this tree; never raised itself
    +-- DecodeError                bytes are not a well-formed object
    |   +-- TruncatedError         input ends before the layout does
    |   +-- OversizeError          a length field or the input exceeds a limit
    |   +-- NonCanonicalError      well-formed but not the one canonical encoding
    |   +-- TrailingBytesError     bytes after the end of the object
    +-- UnsupportedVersionError    magic is right, version (or kind) is unknown
    +-- VerificationError          well-formed but not authentic or not acceptable
        +-- BadSignatureError      signature does not verify
        +-- UnknownKeyError        signer key id not in the trusted set
        +-- RevokedKeyError        signer is enrolled but revoked / returned / lost
        +-- WrongRecipientError    sealed to another data key
        +-- HashMismatchError      a hash in a signed part does not match the bytes
        +-- DigestMismatchError    HTTP Content-Digest does not match the request body
        +-- BindingError           sealed plaintext disagrees with the signed header
        +-- ExpiredError           a snapshot (or other dated object) is out of date
        +-- RollbackError          an older snapshot version than one already seen
        +-- SignatureInputError    an HTTP request signature breaks the profile
        |   +-- MissingSignatureError  Signature or Signature-Input field absent
        +-- StaleRequestError      request ``created`` outside the window
        +-- ReplayError            request nonce already seen
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadSignatureError",
    "CodedError",
    "BindingError",
    "DecodeError",
    "DigestMismatchError",
    "ExpiredError",
    "HashMismatchError",
    "MissingSignatureError",
    "NonCanonicalError",
    "OversizeError",
    "ReplayError",
    "RevokedKeyError",
    "RollbackError",
    "SignatureInputError",
    "StaleRequestError",
    "TrailingBytesError",
    "TruncatedError",
    "UnknownKeyError",
    "UnsupportedVersionError",
    "VerificationError",
    "WireError",
    "WrongRecipientError",
]


class CodedError(Exception):
    """The shape every package's error base shares: a stable ``code`` and identifying ``facts``.

    Not part of any tree by itself: ``WireError``, ``keys.errors.KeysError``,
    ``tablet.errors.TabletError`` and ``usb_ingest.errors.IngestError`` derive
    from it, so catching one package's base never catches another's.
    """

    code = "error"

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message = message
        self.facts = facts

    def __str__(self) -> str:
        if not self.facts:
            return self.message
        details = ", ".join(f"{k}={v}" for k, v in sorted(self.facts.items()))
        return f"{self.message} ({details})"


class WireError(CodedError):
    """Base of all protocol errors. ``code`` is stable and documented."""

    code = "wire-error"


class DecodeError(WireError):
    code = "malformed"


class TruncatedError(DecodeError):
    code = "truncated"


class OversizeError(DecodeError):
    code = "oversize"


class NonCanonicalError(DecodeError):
    code = "non-canonical"


class TrailingBytesError(DecodeError):
    code = "trailing-bytes"


class UnsupportedVersionError(WireError):
    code = "unsupported-version"


class VerificationError(WireError):
    code = "verification-failed"


class BadSignatureError(VerificationError):
    code = "bad-signature"


class UnknownKeyError(VerificationError):
    code = "unknown-key"


class RevokedKeyError(VerificationError):
    code = "revoked"


class WrongRecipientError(VerificationError):
    code = "wrong-recipient"


class HashMismatchError(VerificationError):
    code = "hash-mismatch"


class DigestMismatchError(VerificationError):
    code = "digest-mismatch"


class BindingError(VerificationError):
    code = "binding-mismatch"


class ExpiredError(VerificationError):
    code = "expired"


class RollbackError(VerificationError):
    code = "rollback"


class SignatureInputError(VerificationError):
    code = "bad-signature-input"


class MissingSignatureError(SignatureInputError):
    code = "missing-signature"


class StaleRequestError(VerificationError):
    code = "clock-skew"


class ReplayError(VerificationError):
    code = "replay"
