"""The one exception tree of ``keys/``.

Grouped by who is at fault. Every error has a stable ``code`` and carries the
facts that identify the object (path, device id, mode, status), never key
material or passphrases::

    KeysError                         base; never raised itself
    +-- KeyFileError                  a key, certificate or passphrase file cannot be used
    |   +-- KeyFileMissingError       the file does not exist
    |   +-- LooseKeyPermissionsError  a private file is group/other accessible
    |   +-- WrongPassphraseError      wrong, missing or unexpected passphrase
    |   +-- CorruptKeyFileError       not a key/certificate of the expected kind
    +-- StorageError                  a file or directory cannot be read or written (OSError)
    +-- AuthorityError                authority directory missing, incomplete or already there
    +-- RegistryError                 the device registry refuses an operation
    |   +-- UnknownDeviceError        no tablet or station with that id
    |   +-- DuplicateDeviceError      id or public key already enrolled
    |   +-- InvalidTransitionError    status change not allowed by the state machine
    |   +-- IncompleteReturnError     "returned" without proof of completeness or signoff
    |   +-- InvalidRecordError        a field fails validation
    |   +-- RegistrySchemaError       database schema newer than this code
    +-- SnapshotCacheError            no snapshot held, or the cache files are unusable
    +-- BundleError                   a provisioning or gateway bundle is invalid
    +-- TlsError                      certificate or SSL context cannot be built
    +-- AccessCodeError               text that is not a self-enumeration access code

Snapshot verification failures stay in the wire tree (``wire.errors``):
``RollbackError``, ``ExpiredError``, ``BadSignatureError`` and the decode errors.
"""

from __future__ import annotations

from wire.errors import CodedError

__all__ = [
    "AccessCodeError",
    "AuthorityError",
    "BundleError",
    "CorruptKeyFileError",
    "DuplicateDeviceError",
    "IncompleteReturnError",
    "InvalidRecordError",
    "InvalidTransitionError",
    "KeyFileError",
    "KeyFileMissingError",
    "KeysError",
    "LooseKeyPermissionsError",
    "RegistryError",
    "RegistrySchemaError",
    "SnapshotCacheError",
    "StorageError",
    "TlsError",
    "UnknownDeviceError",
    "WrongPassphraseError",
]


class KeysError(CodedError):
    """Base of all ``keys/`` errors. ``code`` is stable; ``facts`` identify the object."""

    code = "keys-error"


class KeyFileError(KeysError):
    code = "key-file"


class KeyFileMissingError(KeyFileError):
    code = "key-file-missing"


class LooseKeyPermissionsError(KeyFileError):
    code = "loose-permissions"


class WrongPassphraseError(KeyFileError):
    code = "wrong-passphrase"


class CorruptKeyFileError(KeyFileError):
    code = "corrupt-key-file"


class StorageError(KeysError):
    code = "storage"


class AuthorityError(KeysError):
    code = "authority"


class RegistryError(KeysError):
    code = "registry"


class UnknownDeviceError(RegistryError):
    code = "unknown-device"


class DuplicateDeviceError(RegistryError):
    code = "duplicate-device"


class InvalidTransitionError(RegistryError):
    code = "invalid-transition"


class IncompleteReturnError(RegistryError):
    code = "incomplete-return"


class InvalidRecordError(RegistryError):
    code = "invalid-record"


class RegistrySchemaError(RegistryError):
    code = "registry-schema"


class SnapshotCacheError(KeysError):
    code = "snapshot-cache"


class BundleError(KeysError):
    code = "bundle"


class TlsError(KeysError):
    code = "tls"


class AccessCodeError(KeysError):
    """Not an access code (length, symbol or check character); deliberately says no more."""

    code = "bad-access-code"
