"""``SnapshotCache``: the registry snapshot a consumer (gateway, station, tablet) currently trusts.

Files: ``<path>`` holds the accepted snapshot bytes and ``<path>.highwater``
the highest version ever accepted (decimal text). The snapshot is written
first and the high-water mark second, each atomically, so after a crash the
held version is ``max(highwater, version in <path>)`` and never goes down: a
rollback is refused across restarts, and a snapshot file older than the mark
is refused on open.

Acceptance is ``wire.snapshot.accept_snapshot`` (root signature, expiry,
``min_version``); its ``RollbackError`` / ``ExpiredError`` reach the caller
unchanged. The same version with different bytes is also ``RollbackError``:
the root signed two different registries under one version, which must not
be papered over. ``offer`` does blocking fsyncs; asyncio callers run it in an
executor. One writer per cache path (the caller's process) is assumed.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from wire.errors import ExpiredError, RollbackError, WireError
from wire.limits import DEFAULT_LIMITS, Limits
from wire.snapshot import RegistrySnapshot, accept_snapshot

from .errors import SnapshotCacheError, StorageError
from .files import atomic_write

__all__ = ["SnapshotCache"]

_log = structlog.get_logger("keys.snapshots")
_MAX_HIGHWATER_BYTES = 32


class SnapshotCache:
    """Holds the current accepted snapshot; build it with ``SnapshotCache.open``."""

    def __init__(self, path: Path, root_public_key: bytes, limits: Limits) -> None:
        self.path = path
        self.highwater_path = path.with_name(path.name + ".highwater")
        self._root = root_public_key
        self._limits = limits
        self._snapshot: RegistrySnapshot | None = None
        self._version = 0

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], root_public_key: bytes, *, limits: Limits = DEFAULT_LIMITS
    ) -> SnapshotCache:
        """Load what the cache holds (nothing is fine); the held snapshot must verify under the root key.

        Expiry is not checked here (a stale cache must still open so a fresh
        snapshot can be offered); ``current`` checks it.
        """
        cache = cls(Path(path), root_public_key, limits)
        cache._version = cache._read_highwater()
        raw = cache._read_snapshot()
        if raw is not None:
            try:
                # now_ms=0: verify signature and structure only; expiry is checked by current().
                snap = accept_snapshot(raw, root_public_key, now_ms=0, limits=limits)
            except WireError as e:
                raise SnapshotCacheError(
                    f"held snapshot does not verify ({e.code})", path=str(cache.path)
                ) from e
            if snap.version < cache._version:
                raise SnapshotCacheError(
                    "held snapshot is older than the highest version seen",
                    path=str(cache.path), version=snap.version, highwater=cache._version,
                )
            cache._snapshot = snap
            cache._version = snap.version
        return cache

    def _read_highwater(self) -> int:
        try:
            text = self.highwater_path.read_bytes()[:_MAX_HIGHWATER_BYTES].decode("ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as e:
            raise SnapshotCacheError("cannot read the high-water mark", path=str(self.highwater_path)) from e
        if not text.isdigit():
            raise SnapshotCacheError("high-water mark is not a number", path=str(self.highwater_path))
        return int(text)

    def _read_snapshot(self) -> bytes | None:
        try:
            with self.path.open("rb") as fh:
                data = fh.read(self._limits.max_document_bytes + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError("cannot read the snapshot", path=str(self.path), error=e.strerror) from e
        return data

    @property
    def version(self) -> int:
        """Highest version ever accepted here (0 if none); survives restarts."""
        return self._version

    @property
    def raw(self) -> bytes | None:
        return None if self._snapshot is None else self._snapshot.raw

    @property
    def snapshot(self) -> RegistrySnapshot | None:
        """The held snapshot without an expiry check (for display); trust decisions use ``current``."""
        return self._snapshot

    def current(self, *, now_ms: int) -> RegistrySnapshot:
        """The held snapshot if still valid; ``ExpiredError`` if stale, ``SnapshotCacheError`` if none."""
        snap = self._snapshot
        if snap is None:
            raise SnapshotCacheError("no registry snapshot held", path=str(self.path))
        if now_ms >= snap.expires_at_ms:
            raise ExpiredError("registry snapshot expired", version=snap.version, expires_at_ms=snap.expires_at_ms)
        return snap

    def offer(self, data: bytes, *, now_ms: int) -> RegistrySnapshot:
        """Accept ``data`` if it verifies, is unexpired and is not older than what is held; persist it.

        Returns the snapshot now held. Offering the held bytes again is a no-op.
        """
        snap = accept_snapshot(data, self._root, now_ms=now_ms, min_version=self._version, limits=self._limits)
        held = self._snapshot
        if snap.version == self._version and held is not None:
            if held.raw == snap.raw:
                return held
            raise RollbackError("a different snapshot with the same version", version=snap.version)
        atomic_write(self.path, snap.raw, mode=0o600)
        atomic_write(self.highwater_path, f"{snap.version}\n".encode("ascii"), mode=0o600)
        self._snapshot = snap
        self._version = snap.version
        _log.info("registry.snapshot.accepted", version=snap.version, expires_at_ms=snap.expires_at_ms)
        return snap
