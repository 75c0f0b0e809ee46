"""The durable spool: verified batches and custody records wait here until the gateway receipts them.

Layout under ``<state_dir>/spool`` (directories 0700, files 0600)::

    batches/   <device_id>.<seq, 16 digits>.<batch hash, 64 hex>.sqb    one envelope, exactly as verified
    custody/   <device_id>.<pulled_at_ms, 16 digits>.<sha256, 64 hex>.sqc   one station-signed custody record
    pulls/     <device_id>.<started_at_ms>.<hex>.jsonl   the journal of a pull in progress (``pull_journal``)
    rejected/  entries the gateway refused for good, each with <name>.reason.json
    custody-notes.jsonl   one line per technician action on an entry (``requeue``)
    .tmp-*     in any of them: a write in progress (never a complete-looking name)

and ``<state_dir>/receipts.jsonl``, the receipt log (``receipt_log.py``): one
JSON line per delivered batch, compacted safely.

Rules:

* A file gets its final name only after temp write -> fsync -> re-read and
  hash check -> rename -> fsync of the directory. A crash at any point leaves
  either nothing or a ``.tmp-*`` file, which ``open`` removes. The batches of
  a pull go through ``spool_group.SpoolGroup`` instead: the same steps for a
  group at a time, with one filesystem flush and one directory fsync (ADR 0007).
* The directory is the index: a final name is a pending entry, and the name
  carries device, seq and hash (checked again against the bytes when read).
* A batch leaves ``batches/`` only through ``complete``, which verifies the
  gateway's receipt (signature by a receipt key of the registry snapshot, and
  batch hash, device and seq equal to the entry's), appends it to the log
  (fsync), then unlinks. A crash between the two is repaired on ``open``.
* The receipt log lets a re-plugged tablet's already delivered batches be
  recognised without reading them (``state_of``).
* ``requeue`` moves a rejected entry back to be sent again, once the cause is
  fixed: the custody note (the entry, its old reason, who, when, why) is
  appended and fsynced first, then the entry is renamed back and both
  directories fsynced, then the reason file removed. An entry whose (device,
  seq) was delivered or is pending meanwhile is not requeued.
* ``summary`` is what the spool holds per tablet, from the files and the
  receipt log (``spool_state.py``), never from counters of this process.

Thread-safe: the puller (a worker thread) and the forwarder (the event loop)
use one ``Spool``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import secrets
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from runtime.private_files import make_private_dir, open_private, touch_private
from wire import parse_receipt
from wire.errors import WireError

from .errors import BadReceipt, RequeueRefused, SpoolError
from .receipt_log import CompactResult, ReceiptLog, fsync_dir
from .spool_state import BATCH_SUFFIX, CUSTODY_SUFFIX, REASON_SUFFIX, TMP_PREFIX, SpoolSnapshot, snapshot, split_name

__all__ = ["CustodyEntry", "RejectedEntry", "Spool", "SpoolCounts", "SpoolEntry"]

log = structlog.get_logger("usb_ingest.spool")

_TMP = TMP_PREFIX
_BATCH_SUFFIX = BATCH_SUFFIX
_CUSTODY_SUFFIX = CUSTODY_SUFFIX
_NOTES = "custody-notes.jsonl"
_MAX_NOTE = 500


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    device_id: str
    seq: int
    batch_hash: bytes
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class CustodyEntry:
    device_id: str
    pulled_at_ms: int
    digest: bytes
    path: Path


@dataclass(frozen=True, slots=True)
class SpoolCounts:
    pending: int
    pending_bytes: int
    custody: int
    rejected: int
    delivered: int


@dataclass(frozen=True, slots=True)
class RejectedEntry:
    """An entry in ``rejected/``: ``name`` is its id for ``requeue``; ``reason`` as the refusal recorded it."""

    name: str
    kind: str  # batch | custody
    device_id: str
    number: int  # seq of a batch, pulled_at_ms of a custody record
    size: int
    reason: Mapping[str, object]


_fsync_dir = fsync_dir
_split_name = split_name


class Spool:
    """Open with ``Spool.open``; see the module docstring for the rules."""

    def __init__(self, root: Path, receipt_log: Path, min_free_bytes: int) -> None:
        self.root = root
        self.batches_dir = root / "batches"
        self.custody_dir = root / "custody"
        self.rejected_dir = root / "rejected"
        self.pulls_dir = root / "pulls"  # journals of pulls in progress (``pull_journal``)
        self.receipt_log = receipt_log
        self._min_free = min_free_bytes
        self._lock = threading.Lock()
        self._receipts = ReceiptLog(receipt_log)
        self._delivered: dict[tuple[str, int], bytes] = self._receipts.index
        self._pending: dict[tuple[str, int], bytes] = {}

    @classmethod
    def open(cls, root: Path, receipt_log: Path, *, min_free_bytes: int = 0) -> Spool:
        """Create the directories, remove leftovers of interrupted writes, load the receipt log."""
        spool = cls(root, receipt_log, min_free_bytes)
        try:
            for d in (root, spool.batches_dir, spool.custody_dir, spool.rejected_dir, spool.pulls_dir,
                      receipt_log.parent):
                make_private_dir(d)  # 0700 whatever the umask, parents included
            if receipt_log.exists():
                touch_private(receipt_log)  # a log left wider by an older version is narrowed to 0600
            removed = 0
            for d in (spool.batches_dir, spool.custody_dir, spool.rejected_dir):
                for p in d.iterdir():
                    if p.name.startswith(_TMP):
                        p.unlink()
                        removed += 1
                if removed:
                    _fsync_dir(d)
            spool._load_receipt_log()
        except OSError as e:
            raise SpoolError("cannot open the spool", path=str(root), error=e.strerror) from e
        if removed:
            log.info("usb.spool.leftovers_removed", count=removed)
        spool._reconcile()
        return spool

    # ---- receipt log ------------------------------------------------------------------------

    def _load_receipt_log(self) -> None:
        self._receipts = ReceiptLog.load(self.receipt_log)
        self._delivered = self._receipts.index

    def _append_receipt(self, row: dict[str, object]) -> None:
        self._receipts.append(row)

    def compact_receipts(self, *, now_ms: int, keep_receipts_ms: int, force: bool = True) -> CompactResult | None:
        """Compact ``receipts.jsonl`` (``ReceiptLog.compact``) while no receipt is appended."""
        try:
            with self._lock:
                return self._receipts.compact(now_ms=now_ms, keep_receipts_ms=keep_receipts_ms, force=force)
        except OSError as e:
            raise SpoolError("cannot compact the receipt log", path=str(self.receipt_log), error=e.strerror) from e

    def _reconcile(self) -> None:
        """Index the pending entries; drop those the log already covers (crash between append and unlink)."""
        for entry in self.pending_batches():
            key = (entry.device_id, entry.seq)
            if self._delivered.get(key) == entry.batch_hash:
                entry.path.unlink(missing_ok=True)
                log.info("usb.spool.reconciled", device_id=entry.device_id, seq=entry.seq)
            else:
                self._pending[key] = entry.batch_hash

    # ---- writing ----------------------------------------------------------------------------

    def _write_verified(self, directory: Path, name: str, data: bytes) -> Path:
        final = directory / name
        try:
            if shutil.disk_usage(directory).free < len(data) + self._min_free:
                raise SpoolError("spool disk is full", path=str(directory), needed=len(data))
            tmp = directory / f"{_TMP}{secrets.token_hex(8)}"
            fd = open_private(tmp, os.O_WRONLY | os.O_EXCL)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if hashlib.sha256(tmp.read_bytes()).digest() != hashlib.sha256(data).digest():
                tmp.unlink()
                raise SpoolError("spool file reads back different bytes", path=str(tmp))
            os.rename(tmp, final)
            _fsync_dir(directory)
        except OSError as e:
            raise SpoolError("cannot write to the spool", path=str(final), error=e.strerror) from e
        return final

    def store_batch(self, device_id: str, seq: int, envelope: bytes) -> SpoolEntry:
        """Durably store a verified envelope (idempotent: the same bytes again are a no-op)."""
        batch_hash = hashlib.sha256(envelope).digest()
        name = f"{device_id}.{seq:016d}.{batch_hash.hex()}.{_BATCH_SUFFIX}"
        path = self.batches_dir / name
        if not path.exists():
            path = self._write_verified(self.batches_dir, name, envelope)
        with self._lock:
            self._pending[(device_id, seq)] = batch_hash
        return SpoolEntry(device_id, seq, batch_hash, path, len(envelope))

    @property
    def min_free_bytes(self) -> int:
        return self._min_free

    def index_pending(self, device_id: str, seq: int, batch_hash: bytes, path: Path, size: int) -> SpoolEntry:
        """Record a batch made durable under its final name (by ``SpoolGroup``) as pending."""
        with self._lock:
            self._pending[(device_id, seq)] = batch_hash
        return SpoolEntry(device_id, seq, batch_hash, path, size)

    def store_custody(self, record: bytes, *, device_id: str, pulled_at_ms: int) -> CustodyEntry:
        """Durably store a custody record (idempotent: the same record again is a no-op)."""
        digest = hashlib.sha256(record).digest()
        name = f"{device_id}.{pulled_at_ms:016d}.{digest.hex()}.{_CUSTODY_SUFFIX}"
        path = self.custody_dir / name
        if not path.exists():
            path = self._write_verified(self.custody_dir, name, record)
        return CustodyEntry(device_id, pulled_at_ms, digest, path)

    # ---- reading ----------------------------------------------------------------------------

    def pending_batches(self) -> list[SpoolEntry]:
        """Pending batches in (device, seq) order."""
        entries = []
        for p in self.batches_dir.iterdir():
            parts = _split_name(p.name, _BATCH_SUFFIX)
            if parts is None:
                continue
            try:
                size = p.stat().st_size
            except FileNotFoundError:  # completed by another thread meanwhile
                continue
            entries.append(SpoolEntry(parts[0], parts[1], parts[2], p, size))
        return sorted(entries, key=lambda e: (e.device_id, e.seq))

    def pending_custody(self) -> list[CustodyEntry]:
        entries = []
        for p in self.custody_dir.iterdir():
            parts = _split_name(p.name, _CUSTODY_SUFFIX)
            if parts is not None:
                entries.append(CustodyEntry(parts[0], parts[1], parts[2], p))
        return sorted(entries, key=lambda e: (e.pulled_at_ms, e.device_id))

    def read(self, entry: SpoolEntry | CustodyEntry) -> bytes:
        """The entry's bytes, checked against the hash in its name."""
        expected = entry.batch_hash if isinstance(entry, SpoolEntry) else entry.digest
        try:
            data = entry.path.read_bytes()
        except OSError as e:
            raise SpoolError("cannot read a spool entry", path=str(entry.path), error=e.strerror) from e
        if hashlib.sha256(data).digest() != expected:
            raise SpoolError("spool entry does not match its hash (disk corruption?)", path=str(entry.path))
        return data

    def state_of(self, device_id: str, seq: int, batch_hash: bytes) -> str | None:
        """``delivered`` / ``pending`` / ``rejected`` for this exact batch, ``conflict`` if another
        batch holds (device, seq), ``None`` if the station has never seen it."""
        with self._lock:
            delivered = self._delivered.get((device_id, seq))
            pending = self._pending.get((device_id, seq))
        if delivered is not None:
            return "delivered" if delivered == batch_hash else "conflict"
        if pending is not None:
            return "pending" if pending == batch_hash else "conflict"
        if (self.rejected_dir / f"{device_id}.{seq:016d}.{batch_hash.hex()}.{_BATCH_SUFFIX}").exists():
            return "rejected"
        return None

    def counts(self) -> SpoolCounts:
        pending = self.pending_batches()
        rejected = sum(1 for p in self.rejected_dir.iterdir() if not p.name.endswith(".reason.json")
                       and not p.name.startswith(_TMP))
        with self._lock:
            delivered = len(self._delivered)
        return SpoolCounts(
            pending=len(pending),
            pending_bytes=sum(e.size for e in pending),
            custody=len(self.pending_custody()),
            rejected=rejected,
            delivered=delivered,
        )

    def summary(self) -> SpoolSnapshot:
        """Per tablet: pending (count, bytes, oldest), forwarded, rejected - from the files and the receipt log."""
        with self._lock:
            forwarded = self._receipts.per_device()
        return snapshot(self.root, forwarded)

    # ---- leaving the spool --------------------------------------------------------------------

    def complete(self, entry: SpoolEntry, receipt: bytes, gateway_keys: Mapping[bytes, bytes]) -> None:
        """Verify ``receipt`` for ``entry``, log it durably, then remove the entry. ``BadReceipt`` if it
        does not verify or covers another batch (the entry stays)."""
        try:
            r = parse_receipt(receipt, dict(gateway_keys))
        except WireError as e:
            raise BadReceipt(f"receipt does not verify ({e.code})", device_id=entry.device_id, seq=entry.seq) from e
        if (r.batch_hash, r.device_id, r.seq) != (entry.batch_hash, entry.device_id, entry.seq):
            raise BadReceipt("receipt covers another batch", device_id=entry.device_id, seq=entry.seq)
        row = {
            "device_id": r.device_id,
            "seq": r.seq,
            "batch_hash": r.batch_hash.hex(),
            "received_at_ms": r.received_at_ms,
            "road": r.road,
            "receipt": base64.b64encode(r.raw).decode("ascii"),
        }
        try:
            with self._lock:
                self._receipts.append(row)
                self._pending.pop((r.device_id, r.seq), None)
            entry.path.unlink(missing_ok=True)
            _fsync_dir(self.batches_dir)
        except OSError as e:
            raise SpoolError("cannot record a receipt", path=str(self.receipt_log), error=e.strerror) from e

    def complete_custody(self, entry: CustodyEntry) -> None:
        try:
            entry.path.unlink(missing_ok=True)
            _fsync_dir(self.custody_dir)
        except OSError as e:
            raise SpoolError("cannot remove a custody record", path=str(entry.path), error=e.strerror) from e

    def reject(self, entry: SpoolEntry | CustodyEntry, reason: Mapping[str, object]) -> Path:
        """Move a refused entry to ``rejected/`` next to a ``.reason.json``; it is never deleted."""
        name = entry.path.name
        body = json.dumps(dict(reason), sort_keys=True, indent=1).encode("utf-8")
        self._write_verified(self.rejected_dir, f"{name}.reason.json", body)
        target = self.rejected_dir / name
        try:
            os.rename(entry.path, target)
            _fsync_dir(self.rejected_dir)
            _fsync_dir(entry.path.parent)
        except OSError as e:
            raise SpoolError("cannot move a refused entry", path=str(entry.path), error=e.strerror) from e
        if isinstance(entry, SpoolEntry):
            with self._lock:
                self._pending.pop((entry.device_id, entry.seq), None)
        return target

    # ---- back from rejected/ ------------------------------------------------------------------

    def rejected_entries(self) -> list[RejectedEntry]:
        """The entries in ``rejected/``, oldest device/number first, each with its recorded reason."""
        out = []
        for p in self.rejected_dir.iterdir():
            kind = "batch" if p.name.endswith(f".{_BATCH_SUFFIX}") else "custody"
            parts = _split_name(p.name, _BATCH_SUFFIX if kind == "batch" else _CUSTODY_SUFFIX)
            if parts is None:
                continue
            try:
                size = p.stat().st_size
                reason = json.loads((self.rejected_dir / f"{p.name}{REASON_SUFFIX}").read_bytes()[:65536])
            except FileNotFoundError:
                reason = {}
            except ValueError:
                reason = {"unreadable": True}
            out.append(RejectedEntry(p.name, kind, parts[0], parts[1], size,
                                     reason if isinstance(reason, dict) else {"unreadable": True}))
        return sorted(out, key=lambda e: (e.device_id, e.number, e.name))

    def _append_note(self, row: dict[str, object]) -> None:
        line = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"
        fd = open_private(self.root / _NOTES, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def requeue(self, name: str, *, note: str, now_ms: int, by: str | None = None) -> RejectedEntry:
        """Move the rejected entry ``name`` back to be forwarded again, after a durable custody note.

        ``RequeueRefused`` if there is no such entry, or its (device, seq) was delivered or is pending
        meanwhile (nothing is changed then)."""
        entry = next((e for e in self.rejected_entries() if e.name == name), None)
        if entry is None:
            raise RequeueRefused("no rejected entry with this id (see `requeue --list`)", entry=name[:200])
        if entry.kind == "batch":
            key = (entry.device_id, entry.number)
            with self._lock:
                if key in self._delivered:
                    raise RequeueRefused("this batch was delivered meanwhile; nothing to send", entry=name)
                if key in self._pending:
                    raise RequeueRefused("a batch with this seq is pending already", entry=name)
        target_dir = self.batches_dir if entry.kind == "batch" else self.custody_dir
        source = self.rejected_dir / name
        try:
            self._append_note({
                "action": "requeue", "at_ms": now_ms, "entry": name, "kind": entry.kind,
                "device_id": entry.device_id, "number": entry.number, "reason": dict(entry.reason),
                "note": note[:_MAX_NOTE], "by": by if by is not None else _user(),
            })
            os.rename(source, target_dir / name)
            _fsync_dir(target_dir)
            _fsync_dir(self.rejected_dir)
            (self.rejected_dir / f"{name}{REASON_SUFFIX}").unlink(missing_ok=True)
            _fsync_dir(self.rejected_dir)
        except OSError as e:
            raise SpoolError("cannot requeue a rejected entry", path=str(source), error=e.strerror) from e
        parts = _split_name(name, _BATCH_SUFFIX)
        if parts is not None:
            with self._lock:
                self._pending[(parts[0], parts[1])] = parts[2]
        log.info("usb.spool.requeued", entry=name, kind=entry.kind, device_id=entry.device_id,
                 number=entry.number, reason_code=entry.reason.get("code"))
        return entry


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"
