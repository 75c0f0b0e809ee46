"""Key files: round trips, modes from birth, refusals (loose mode, wrong passphrase, corrupt), atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from keys import files
from keys.errors import (
    CorruptKeyFileError,
    KeyFileMissingError,
    LooseKeyPermissionsError,
    StorageError,
    WrongPassphraseError,
)
from keys.tls import save_tls_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("passphrase", [None, b"correct horse battery staple"])
def test_signing_key_round_trip(tmp_path: Path, passphrase: bytes | None) -> None:
    key = SigningKey.generate()
    path = tmp_path / "device.key"
    files.save_signing_key(path, key, passphrase)
    loaded = files.load_signing_key(path, passphrase)
    assert bytes(loaded) == bytes(key)
    text = path.read_bytes()
    assert (b"ENCRYPTED" in text) == (passphrase is not None)
    assert bytes(key).hex().encode() not in text


@pytest.mark.parametrize("passphrase", [None, b"pw"])
def test_data_key_round_trip(tmp_path: Path, passphrase: bytes | None) -> None:
    key = PrivateKey.generate()
    path = tmp_path / "data.key"
    files.save_data_key(path, key, passphrase)
    assert bytes(files.load_data_key(path, passphrase)) == bytes(key)


def test_private_key_is_0600_from_birth_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        files.save_signing_key(tmp_path / "k.key", SigningKey.generate())
        files.atomic_write(tmp_path / "other", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.key") == 0o600
    assert _mode(tmp_path / "other") == 0o600


def test_public_files_get_their_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        files.save_public_key(tmp_path / "k.pub", bytes(32))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.pub") == 0o644
    assert files.load_public_key(tmp_path / "k.pub") == bytes(32)


def test_atomic_write_creates_temp_with_mode_0600_before_any_byte(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Observe the temp file at the moment of the first write: already 0600."""
    seen: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes | memoryview) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    files.atomic_write(tmp_path / "secret", b"data")
    monkeypatch.undo()
    assert seen and all(m == 0o600 for m in seen)


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "f"
    files.atomic_write(target, b"one")
    files.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_failed_atomic_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()  # renaming a file over a directory fails
    with pytest.raises(StorageError) as info:
        files.atomic_write(target, b"new")
    assert info.value.facts["path"] == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_atomic_write_into_missing_directory_is_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        files.atomic_write(tmp_path / "nope" / "f", b"x")


@pytest.mark.parametrize(
    ("mode", "refused"),
    [
        (0o600, False),
        (0o400, False),
        (0o700, False),
        (0o640, True),
        (0o604, True),
        (0o620, True),
        (0o602, True),
        (0o644, True),
        (0o666, True),
        (0o610, True),
        (0o601, True),
    ],
)
def test_loose_permissions_refused(tmp_path: Path, mode: int, refused: bool) -> None:
    path = tmp_path / "k.key"
    files.save_signing_key(path, SigningKey.generate())
    os.chmod(path, mode)
    if refused:
        with pytest.raises(LooseKeyPermissionsError) as info:
            files.load_signing_key(path)
        assert str(path) in str(info.value)
        assert oct(mode) in str(info.value)
    else:
        files.load_signing_key(path)


@pytest.mark.parametrize(
    ("saved_with", "loaded_with"),
    [(b"Pw-Qx7", b"Pw-Zz9"), (b"Pw-Qx7", None), (None, b"Pw-Unexp"), (b"Pw-Qx7", b"Pw-Qx"), (b"Pw-Qx7", b"Pw-Qx7\n")],
)
def test_passphrase_mismatch_is_wrong_passphrase(tmp_path: Path, saved_with: bytes | None,
                                                 loaded_with: bytes | None) -> None:
    path = tmp_path / "k.key"
    files.save_signing_key(path, SigningKey.generate(), saved_with)
    with pytest.raises(WrongPassphraseError) as info:
        files.load_signing_key(path, loaded_with)
    for secret in (saved_with, loaded_with):
        if secret:
            assert secret.strip() not in str(info.value).encode()


def test_empty_passphrase_refused_when_saving(tmp_path: Path) -> None:
    with pytest.raises(WrongPassphraseError):
        files.save_signing_key(tmp_path / "k", SigningKey.generate(), b"")


def _write_private(path: Path, data: bytes) -> Path:
    files.atomic_write(path, data)
    return path


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        os.urandom(300),
    ],
)
def test_corrupt_key_file(tmp_path: Path, content: bytes) -> None:
    path = _write_private(tmp_path / "k.key", content)
    with pytest.raises(CorruptKeyFileError):
        files.load_signing_key(path)


def test_truncated_pem_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    files.save_signing_key(path, SigningKey.generate())
    data = path.read_bytes()
    _write_private(path, data[: len(data) // 2])
    with pytest.raises(CorruptKeyFileError):
        files.load_signing_key(path)


def test_key_of_the_wrong_type_is_corrupt(tmp_path: Path) -> None:
    files.save_data_key(tmp_path / "x.key", PrivateKey.generate())
    files.save_signing_key(tmp_path / "e.key", SigningKey.generate())
    save_tls_key(tmp_path / "ec.key", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(CorruptKeyFileError, match="Ed25519"):
        files.load_signing_key(tmp_path / "x.key")
    with pytest.raises(CorruptKeyFileError, match="X25519"):
        files.load_data_key(tmp_path / "e.key")
    with pytest.raises(CorruptKeyFileError, match="Ed25519"):
        files.load_signing_key(tmp_path / "ec.key")


def test_oversized_key_file_is_corrupt(tmp_path: Path) -> None:
    path = _write_private(tmp_path / "k.key", b"A" * (files.MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(CorruptKeyFileError, match="too large"):
        files.load_signing_key(path)


def test_directory_as_key_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "k.key"
    d.mkdir(mode=0o700)
    with pytest.raises(CorruptKeyFileError, match="regular file"):
        files.load_signing_key(d)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileMissingError):
        files.load_signing_key(tmp_path / "absent.key")
    with pytest.raises(KeyFileMissingError):
        files.load_public_key(tmp_path / "absent.pub")


@pytest.mark.parametrize("content", [b"", b"zz" * 32, b"AB" * 32, b"ab" * 31, b"ab" * 33, b"\xff\xfe"])
def test_bad_public_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.pub"
    path.write_bytes(content)
    with pytest.raises(CorruptKeyFileError):
        files.load_public_key(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"secret\n", b"secret"), (b"secret\r\n", b"secret"), (b"secret", b"secret"), (b"two\nlines\n", b"two\nlines")],
)
def test_passphrase_file(tmp_path: Path, content: bytes, expected: bytes) -> None:
    path = _write_private(tmp_path / "pw", content)
    assert files.read_passphrase_file(path) == expected


def test_passphrase_file_refusals(tmp_path: Path) -> None:
    empty = _write_private(tmp_path / "empty", b"\n")
    with pytest.raises(WrongPassphraseError):
        files.read_passphrase_file(empty)
    loose = _write_private(tmp_path / "loose", b"pw\n")
    os.chmod(loose, 0o644)
    with pytest.raises(LooseKeyPermissionsError):
        files.read_passphrase_file(loose)
