"""Grouped durability: the batches of one pull become durable a group at a time (ADR 0007).

One group, in this order::

    stage    each verified envelope -> batches/.tmp-<hex>   (write, no flush)
    flush    one syncfs(2) of the spool's filesystem        (fsync of every temp file where syncfs is missing)
    check    read every temp file back, SHA-256 against the envelope's
    announce ``before_publish(batches)``: the pull journal's line for the group, fsynced (``pull_journal``)
    publish  rename every temp file to its final name
    seal     one fsync of batches/
    report   only now: indexed as pending, returned to the puller, logged ``usb.batch.spooled``

A crash before *publish* leaves only ``.tmp-*`` files (removed by
``Spool.open``, never reported); a crash during *publish* leaves final names
whose bytes were flushed before the rename, so each is whole; nothing is
reported and no custody record names a batch before *seal*. The custody
record of a pull is written after its last group is sealed; a process killed
before that leaves the journal, from which the next start signs a recovery
record for the published batches (after a ``batches/`` fsync).

A group is committed when it holds ``max_batches`` batches or ``max_bytes``
bytes, and by the puller at the end of the volume, before it stops on an
unplug, and (best effort) before it gives up on a spool error.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from runtime.private_files import open_private

from .errors import SpoolError
from .receipt_log import fsync_dir
from .spool import Spool, SpoolEntry
from .spool_state import BATCH_SUFFIX, TMP_PREFIX

__all__ = ["SpoolGroup", "flush_filesystem"]

_LIBC = ctypes.CDLL(None, use_errno=True)
_SYNCFS = getattr(_LIBC, "syncfs", None)


def flush_filesystem(directory: Path, files: list[Path]) -> None:
    """Make every written byte of ``files`` (in ``directory``'s filesystem) durable: one ``syncfs``, or an
    ``fsync`` per file where the C library has no ``syncfs``. ``OSError`` as the kernel reports it."""
    if _SYNCFS is not None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(directory))
        finally:
            os.close(fd)
        return
    for path in files:  # pragma: no cover - every supported system has syncfs (glibc >= 2.14)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class _Staged:
    device_id: str
    seq: int
    batch_hash: bytes
    tmp: Path
    final: Path
    size: int


class SpoolGroup:
    """Stage verified envelopes, then ``commit`` them together. Use as a context manager: what is still staged
    when the block ends (an error, or no final ``commit``) is removed, never published."""

    def __init__(self, spool: Spool, *, max_batches: int, max_bytes: int,
                 before_publish: Callable[[list[tuple[int, bytes]]], None] | None = None) -> None:
        self.spool = spool
        self.before_publish = before_publish or (lambda _batches: None)
        self.max_batches = max(1, max_batches)
        self.max_bytes = max(1, max_bytes)
        self._staged: list[_Staged] = []
        self._bytes = 0

    def __enter__(self) -> SpoolGroup:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()

    def add(self, device_id: str, seq: int, envelope: bytes) -> list[SpoolEntry]:
        """Stage one verified envelope; returns the entries made durable by this call (the group when it became
        full, else none). A batch already spooled with these bytes is returned at once."""
        batch_hash = hashlib.sha256(envelope).digest()
        directory = self.spool.batches_dir
        final = directory / f"{device_id}.{seq:016d}.{batch_hash.hex()}.{BATCH_SUFFIX}"
        if final.exists():
            return [self.spool.index_pending(device_id, seq, batch_hash, final, len(envelope))]
        tmp = directory / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            if shutil.disk_usage(directory).free < len(envelope) + self.spool.min_free_bytes:
                raise SpoolError("spool disk is full", path=str(directory), needed=len(envelope))
            fd = open_private(tmp, os.O_WRONLY | os.O_EXCL)
            try:
                self._staged.append(_Staged(device_id, seq, batch_hash, tmp, final, len(envelope)))
                view = memoryview(envelope)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as e:
            raise SpoolError("cannot write to the spool", path=str(tmp), error=e.strerror) from e
        self._bytes += len(envelope)
        if len(self._staged) >= self.max_batches or self._bytes >= self.max_bytes:
            return self.commit()
        return []

    def commit(self) -> list[SpoolEntry]:
        """Flush, check, publish and seal the staged batches (see the module docstring); their entries."""
        staged, self._staged, self._bytes = self._staged, [], 0
        if not staged:
            return []
        directory = self.spool.batches_dir
        try:
            flush_filesystem(directory, [s.tmp for s in staged])
            for s in staged:
                if hashlib.sha256(s.tmp.read_bytes()).digest() != s.batch_hash:
                    raise SpoolError("spool file reads back different bytes", path=str(s.tmp))
            self.before_publish([(s.seq, s.batch_hash) for s in staged])
            for s in staged:
                os.rename(s.tmp, s.final)
            fsync_dir(directory)
        except OSError as e:
            self._staged = staged
            raise SpoolError("cannot write to the spool", path=str(directory), error=e.strerror) from e
        except SpoolError:
            self._staged = staged
            raise
        return [self.spool.index_pending(s.device_id, s.seq, s.batch_hash, s.final, s.size) for s in staged]

    def abort(self) -> None:
        """Remove what is staged (temp files only; nothing was published)."""
        staged, self._staged, self._bytes = self._staged, [], 0
        for s in staged:
            try:
                s.tmp.unlink(missing_ok=True)
            except OSError:
                continue  # removed by the next Spool.open
