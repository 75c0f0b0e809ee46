"""SnapshotCache: only newer-or-equal snapshots, never expired, rollback refused across restarts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from keys.errors import SnapshotCacheError
from keys.snapshots import SnapshotCache
from wire.errors import BadSignatureError, ExpiredError, RollbackError, UnknownKeyError
from wire.snapshot import make_snapshot

from .conftest import DAY_MS, NOW

ROOT = SigningKey.generate()
ROOT_PUB = bytes(ROOT.verify_key)


def snap(version: int, *, issued: int = NOW, validity: int = DAY_MS, root: SigningKey = ROOT,
         gateways: int = 1) -> bytes:
    return make_snapshot(
        version=version, issued_at_ms=issued, expires_at_ms=issued + validity, data_public_key=bytes(32),
        gateway_public_keys=[bytes([i + 1]) * 32 for i in range(gateways)], tablets=[], stations=[], root_key=root,
    )


def test_empty_cache(tmp_path: Path) -> None:
    cache = SnapshotCache.open(tmp_path / "registry.snapshot", ROOT_PUB)
    assert (cache.version, cache.raw, cache.snapshot) == (0, None, None)
    with pytest.raises(SnapshotCacheError):
        cache.current(now_ms=NOW)


def test_offer_newer_then_refuse_older(tmp_path: Path) -> None:
    path = tmp_path / "registry.snapshot"
    cache = SnapshotCache.open(path, ROOT_PUB)
    assert cache.offer(snap(1), now_ms=NOW).version == 1
    assert cache.offer(snap(3), now_ms=NOW).version == 3
    with pytest.raises(RollbackError):
        cache.offer(snap(2), now_ms=NOW)
    assert cache.current(now_ms=NOW).version == 3
    assert path.read_bytes() == cache.raw
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_rollback_refused_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "registry.snapshot"
    SnapshotCache.open(path, ROOT_PUB).offer(snap(5), now_ms=NOW)
    reopened = SnapshotCache.open(path, ROOT_PUB)
    assert reopened.version == 5
    with pytest.raises(RollbackError):
        reopened.offer(snap(4), now_ms=NOW)
    assert reopened.offer(snap(6), now_ms=NOW).version == 6


def test_rollback_refused_even_if_snapshot_file_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "registry.snapshot"
    SnapshotCache.open(path, ROOT_PUB).offer(snap(5), now_ms=NOW)
    path.unlink()
    cache = SnapshotCache.open(path, ROOT_PUB)
    assert cache.version == 5
    with pytest.raises(RollbackError):
        cache.offer(snap(4), now_ms=NOW)
    assert cache.offer(snap(5), now_ms=NOW).version == 5


def test_older_snapshot_file_on_disk_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.snapshot"
    SnapshotCache.open(path, ROOT_PUB).offer(snap(5), now_ms=NOW)
    path.write_bytes(snap(2))  # e.g. restored from an old backup
    with pytest.raises(SnapshotCacheError, match="older"):
        SnapshotCache.open(path, ROOT_PUB)


@pytest.mark.parametrize("content", [b"", b"junk", b"3x\n"])
def test_bad_highwater_file_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "registry.snapshot"
    (tmp_path / "registry.snapshot.highwater").write_bytes(content)
    with pytest.raises(SnapshotCacheError):
        SnapshotCache.open(path, ROOT_PUB)


def test_tampered_or_foreign_snapshot_file_refused_on_open(tmp_path: Path) -> None:
    path = tmp_path / "registry.snapshot"
    data = snap(1)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SnapshotCacheError):
        SnapshotCache.open(path, ROOT_PUB)
    path.write_bytes(snap(1, root=SigningKey.generate()))
    with pytest.raises(SnapshotCacheError):
        SnapshotCache.open(path, ROOT_PUB)


def test_same_version_same_bytes_is_noop_other_bytes_refused(tmp_path: Path) -> None:
    cache = SnapshotCache.open(tmp_path / "s", ROOT_PUB)
    first = snap(2)
    cache.offer(first, now_ms=NOW)
    assert cache.offer(first, now_ms=NOW + 1).raw == first
    with pytest.raises(RollbackError, match="same version"):
        cache.offer(snap(2, gateways=2), now_ms=NOW)
    assert cache.raw == first


def test_expired_offer_refused_and_state_unchanged(tmp_path: Path) -> None:
    cache = SnapshotCache.open(tmp_path / "s", ROOT_PUB)
    cache.offer(snap(1), now_ms=NOW)
    with pytest.raises(ExpiredError):
        cache.offer(snap(2, issued=NOW - 2 * DAY_MS), now_ms=NOW)
    assert cache.version == 1


@pytest.mark.parametrize(("offset", "expired"), [(DAY_MS - 1, False), (DAY_MS, True), (DAY_MS + 1, True)])
def test_current_refuses_stale_trust(tmp_path: Path, offset: int, expired: bool) -> None:
    cache = SnapshotCache.open(tmp_path / "s", ROOT_PUB)
    cache.offer(snap(1), now_ms=NOW)
    reopened = SnapshotCache.open(tmp_path / "s", ROOT_PUB)  # a stale cache still opens
    for c in (cache, reopened):
        if expired:
            with pytest.raises(ExpiredError):
                c.current(now_ms=NOW + offset)
        else:
            assert c.current(now_ms=NOW + offset).version == 1


def test_foreign_root_and_bad_signature_refused(tmp_path: Path) -> None:
    cache = SnapshotCache.open(tmp_path / "s", ROOT_PUB)
    with pytest.raises(UnknownKeyError):
        cache.offer(snap(1, root=SigningKey.generate()), now_ms=NOW)
    data = bytearray(snap(1))
    data[-10] ^= 0xFF
    with pytest.raises(BadSignatureError):
        cache.offer(bytes(data), now_ms=NOW)
    assert cache.version == 0
    assert not (tmp_path / "s").exists()
