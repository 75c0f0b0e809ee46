"""Key files on disk: atomic writes, private files born 0600, PEM PKCS8 with optional passphrase.

Private keys (Ed25519 signing keys, the X25519 data key, the TLS keys in
``keys.tls``) are PEM PKCS8, encrypted with ``BestAvailableEncryption`` when a
passphrase is given. Public keys are one line of lowercase hex (``*.pub``).

Reading a private file refuses it before reading a byte when its mode lets the
group or others in (``mode & 0o077``): a key that may have been read by someone
else is not silently used. Nothing here logs or puts key material in an error.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from wire.errors import DecodeError
from wire.keyids import parse_hex

from .errors import (
    CorruptKeyFileError,
    KeyFileMissingError,
    LooseKeyPermissionsError,
    StorageError,
    WrongPassphraseError,
)

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "PRIVATE_MODE",
    "PUBLIC_MODE",
    "atomic_write",
    "check_private_mode",
    "fsync_dir",
    "load_data_key",
    "load_private_pem",
    "load_public_key",
    "load_signing_key",
    "read_passphrase_file",
    "read_private_file",
    "save_data_key",
    "save_public_key",
    "save_signing_key",
    "serialize_private_key",
]

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
MAX_KEY_FILE_BYTES = 64 * 1024
_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename or create inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_MODE) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never a part.

    A temp file in the same directory is created with ``O_EXCL`` and ``mode``
    from birth (never wider, whatever the umask), written, fsynced, renamed over
    ``path``, and the directory is fsynced. On failure the temp file is removed.
    """
    target = Path(path)
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    except OSError as e:
        raise StorageError("cannot create file", path=str(target), error=e.strerror) from e
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StorageError("cannot write file", path=str(target), error=e.strerror) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_private_mode(path: str | os.PathLike[str]) -> None:
    """``LooseKeyPermissionsError`` if ``path`` is group/other accessible."""
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise KeyFileMissingError("key file not found", path=str(path)) from e
    except OSError as e:
        raise StorageError("cannot stat file", path=str(path), error=e.strerror) from e
    _check_mode(Path(path), st)


def _in_credentials_directory(path: Path) -> bool:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not creds:
        return False
    try:
        return path.resolve().parent == Path(creds).resolve()
    except OSError:
        return False


def _check_mode(path: Path, st: os.stat_result) -> None:
    """Refuse group/other access, with one exception: systemd credentials.

    systemd (254 and later) writes ``LoadCredential=`` files as root-owned
    0400 with an ACL granting the service user read, which ``stat`` shows as
    0440. Such a file is accepted when it lies directly in
    ``$CREDENTIALS_DIRECTORY`` (a private directory only the service can
    enter), is owned by root or by us, and has no write or other bits.
    """
    if not stat.S_ISREG(st.st_mode):
        raise CorruptKeyFileError("not a regular file", path=str(path))
    loose = st.st_mode & 0o077
    if loose == 0o040 and st.st_uid in (0, os.geteuid()) and _in_credentials_directory(path):
        loose = 0
    if loose:
        mode = oct(stat.S_IMODE(st.st_mode))
        raise LooseKeyPermissionsError(
            "private file is accessible by group or others; run chmod 600",
            path=str(path),
            mode=mode,
        )


def read_private_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_KEY_FILE_BYTES) -> bytes:
    """Read a private file after checking, on the open descriptor, that its mode is tight."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise KeyFileMissingError("key file not found", path=str(p)) from e
    except OSError as e:
        raise StorageError("cannot open file", path=str(p), error=e.strerror) from e
    try:
        _check_mode(p, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise CorruptKeyFileError("file too large for a key", path=str(p))
    return data


def read_passphrase_file(path: str | os.PathLike[str]) -> bytes:
    """A passphrase from a private file; one trailing newline is dropped; empty is refused."""
    data = read_private_file(path, max_bytes=4096)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise WrongPassphraseError("passphrase file is empty", path=str(path))
    return data


def serialize_private_key(key: PrivateKeyTypes, passphrase: bytes | None) -> bytes:
    """PEM PKCS8, encrypted when ``passphrase`` is given (empty passphrases are refused)."""
    if passphrase is not None and not passphrase:
        raise WrongPassphraseError("empty passphrase")
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption() if passphrase is None else serialization.BestAvailableEncryption(passphrase)
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_private_pem(path: str | os.PathLike[str], passphrase: bytes | None) -> PrivateKeyTypes:
    """Load any PEM private key, mapping every failure into the ``KeyFileError`` tree."""
    data = read_private_file(path)
    encrypted = _ENCRYPTED_PEM in data
    if encrypted and passphrase is None:
        raise WrongPassphraseError("key file is encrypted and no passphrase was given", path=str(path))
    if not encrypted and passphrase is not None:
        if b"-----BEGIN PRIVATE KEY-----" in data:
            raise WrongPassphraseError("a passphrase was given but the key file is not encrypted", path=str(path))
        raise CorruptKeyFileError("not a PEM PKCS8 private key", path=str(path))
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        if encrypted:
            raise WrongPassphraseError("wrong passphrase (or damaged encrypted key)", path=str(path)) from e
        raise CorruptKeyFileError("not a PEM PKCS8 private key", path=str(path)) from e


def save_signing_key(path: str | os.PathLike[str], key: SigningKey, passphrase: bytes | None = None) -> None:
    """Write an Ed25519 signing key (PEM PKCS8, 0600)."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key))
    atomic_write(path, serialize_private_key(private, passphrase))


def load_signing_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> SigningKey:
    private = load_private_pem(path, passphrase)
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise CorruptKeyFileError("not an Ed25519 private key", path=str(path))
    return SigningKey(private.private_bytes_raw())


def save_data_key(path: str | os.PathLike[str], key: PrivateKey, passphrase: bytes | None = None) -> None:
    """Write an X25519 private key (PEM PKCS8, 0600)."""
    private = x25519.X25519PrivateKey.from_private_bytes(bytes(key))
    atomic_write(path, serialize_private_key(private, passphrase))


def load_data_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> PrivateKey:
    private = load_private_pem(path, passphrase)
    if not isinstance(private, x25519.X25519PrivateKey):
        raise CorruptKeyFileError("not an X25519 private key", path=str(path))
    return PrivateKey(private.private_bytes_raw())


def save_public_key(path: str | os.PathLike[str], public_key: bytes) -> None:
    """Write a raw 32-byte public key as one line of lowercase hex (0644)."""
    if len(public_key) != 32:
        raise CorruptKeyFileError("public key must be 32 bytes", path=str(path))
    atomic_write(path, public_key.hex().encode("ascii") + b"\n", mode=PUBLIC_MODE)


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        text = p.read_bytes()[:256].decode("ascii").strip()
    except FileNotFoundError as e:
        raise KeyFileMissingError("public key file not found", path=str(p)) from e
    except OSError as e:
        raise StorageError("cannot read file", path=str(p), error=e.strerror) from e
    except UnicodeDecodeError as e:
        raise CorruptKeyFileError("public key file is not hex", path=str(p)) from e
    try:
        return parse_hex(text, 32, "public key")
    except DecodeError as e:
        raise CorruptKeyFileError("public key file must hold 64 lowercase hex digits", path=str(p)) from e
