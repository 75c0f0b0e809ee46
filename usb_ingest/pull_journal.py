"""The pull journal: no batch reaches the gateway by the USB road without a custody record naming it (ADR 0007).

A pull's custody record is signed when the pull ends. A process killed during
the pull (SIGKILL, power loss) has sealed some groups already; they are
forwarded after the restart, and without this journal no record would name
them. So each pull with batches to take keeps a journal,
``<spool>/pulls/<device_id>.<started_at_ms, 16 digits>.<8 hex>.jsonl`` (0600),
one JSON line each, every line fsynced before the step it announces::

    {"pull": {"device_id", "started_at_ms", "manifest_sha256", "usb": {...}}}   created (O_EXCL) before the first
                                                  batch is staged, fsync, dir fsync
    {"group": [[seq, batch_hash hex], ...]}     before the group's first rename (its bytes are flushed already)
    {"custody": base64, "pulled_at_ms": n}     the pull's custody record, before it is stored in custody/

then the custody record is stored (``Spool.store_custody``) and the journal
removed (unlink, dir fsync).

``recover(spool, station, clock)`` runs when the station opens, before anything
is forwarded or the receipt log compacted. For each journal left behind:

* with a ``custody`` line: that record, byte for byte, is stored again (a no-op
  if it is still in ``custody/``; if it was forwarded already, the gateway
  keeps a record once, by its hash), ``kind = "completed"``;
* else the batches of its ``group`` lines the station holds (pending, rejected)
  or delivered, with the same hash, are named by a **recovery record**
  (``recovery.reason = "pull-interrupted"``, ``recovered_at_ms`` = now,
  ``pulled_at_ms`` = when the interrupted pull started) after ``batches/`` is
  fsynced (a rename of a cut publish is durable before a record names it). The
  record goes through the journal's ``custody`` line first, so a crash during
  recovery repeats the same bytes. Groups whose files were never published
  (their temp files are removed by ``Spool.open``) are not named: the next pull
  takes them again, under its own record.

A journal cut in its first line (a crash while it was created) announces no
group: it is removed. A torn last line is a step that never happened.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from nacl.signing import SigningKey

from runtime.private_files import open_private
from wire import UsbHints, make_custody

from .errors import SpoolError
from .receipt_log import fsync_dir
from .spool import Spool

__all__ = ["PullJournal", "Recovered", "recover"]

log = structlog.get_logger("usb_ingest.custody")

_SUFFIX = ".jsonl"
_MAX_JOURNAL_BYTES = 64 * 1024 * 1024  # 100,000 batches x ~90 bytes, twice (groups and the record), with room


def _append(fd: int, row: dict[str, Any]) -> None:
    line = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"
    view = memoryview(line)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


class PullJournal:
    """The journal of one pull (see the module docstring); the file exists from the first ``group`` on."""

    def __init__(self, spool: Spool, *, device_id: str, started_at_ms: int, manifest_sha256: bytes,
                 usb: UsbHints) -> None:
        self.spool = spool
        self.header = {"device_id": device_id, "started_at_ms": started_at_ms,
                       "manifest_sha256": manifest_sha256.hex(),
                       "usb": {"vendor_id": usb.vendor_id, "product_id": usb.product_id, "serial": usb.serial}}
        self.path = spool.pulls_dir / f"{device_id}.{started_at_ms:016d}.{secrets.token_hex(4)}{_SUFFIX}"
        self._fd: int | None = None

    @property
    def opened(self) -> bool:
        return self._fd is not None

    def _write(self, row: dict[str, Any] | None) -> None:
        try:
            if self._fd is None:
                fd = open_private(self.path, os.O_WRONLY | os.O_EXCL | os.O_APPEND)
                try:
                    _append(fd, {"pull": self.header})
                    fsync_dir(self.spool.pulls_dir)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            if row is not None:
                _append(self._fd, row)
        except OSError as e:
            raise SpoolError("cannot write the pull journal", path=str(self.path), error=e.strerror) from e

    def begin(self) -> None:
        """Create the journal before the first batch is staged (it takes its inode and room before they do)."""
        if self._fd is None:
            self._write(None)

    def group(self, batches: list[tuple[int, bytes]]) -> None:
        """Announce a group before its first rename (``SpoolGroup``'s ``before_publish``)."""
        self._write({"group": [[seq, h.hex()] for seq, h in batches]})

    def finish(self, record: bytes | None, *, pulled_at_ms: int) -> None:
        """The pull's end: its custody record (or none: nothing to name) made durable, then the journal gone."""
        if record is not None:
            if self._fd is not None:
                try:
                    self._write({"custody": base64.b64encode(record).decode("ascii"), "pulled_at_ms": pulled_at_ms})
                except SpoolError:  # (disk full) the record itself may still fit: once stored, the line is moot
                    log.info("usb.custody.journal_line_failed", device_id=self.header["device_id"])
            self.spool.store_custody(record, device_id=str(self.header["device_id"]), pulled_at_ms=pulled_at_ms)
        self.close(remove=True)

    def close(self, *, remove: bool = False) -> None:
        """Close the file; ``remove`` deletes it (only once its custody record is durable, or nothing to name)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)
            if remove:
                self.path.unlink(missing_ok=True)
                fsync_dir(self.spool.pulls_dir)
        except OSError as e:
            raise SpoolError("cannot remove the pull journal", path=str(self.path), error=e.strerror) from e


@dataclass(frozen=True, slots=True)
class Recovered:
    """One journal dealt with on start. ``kind``: recovery (a new recovery record) | completed (the pull's own
    record stored again) | empty (nothing of the pull was published)."""

    device_id: str
    kind: str
    batches: int
    journal: str


@dataclass(frozen=True, slots=True)
class _Journal:
    header: dict[str, Any] | None
    announced: list[tuple[int, bytes]]
    custody: tuple[bytes, int] | None
    whole: int  # bytes up to the end of the last whole line


def _read_journal(path: Path) -> _Journal:
    """Header, announced batches, and the custody line (record, pulled_at_ms) if any; a torn line ends it."""
    with path.open("rb") as f:
        data = f.read(_MAX_JOURNAL_BYTES + 1)
    if len(data) > _MAX_JOURNAL_BYTES:
        raise SpoolError("pull journal too large", path=str(path))
    header: dict[str, Any] | None = None
    batches: list[tuple[int, bytes]] = []
    custody: tuple[bytes, int] | None = None
    whole = 0
    for raw in data.split(b"\n")[:-1]:  # what follows the last newline is a torn line (or nothing)
        try:
            row = json.loads(raw)
            if header is None:
                header = dict(row["pull"])
            elif "group" in row:
                batches.extend((int(seq), bytes.fromhex(h)) for seq, h in row["group"])
            elif "custody" in row:
                custody = (base64.b64decode(row["custody"], validate=True), int(row["pulled_at_ms"]))
        except (ValueError, KeyError, TypeError):
            break  # a cut line: that step never happened
        whole += len(raw) + 1
    return _Journal(header, batches, custody, whole)


def recover(spool: Spool, *, station_id: str, signing_key: SigningKey, clock: Callable[[], int]) -> list[Recovered]:
    """Deal with every journal left by an interrupted pull (see the module docstring). ``SpoolError`` on I/O."""
    out: list[Recovered] = []
    try:
        journals = sorted(p for p in spool.pulls_dir.iterdir() if p.name.endswith(_SUFFIX))
    except OSError as e:
        raise SpoolError("cannot list the pull journals", path=str(spool.pulls_dir), error=e.strerror) from e
    for path in journals:
        try:
            journal = _read_journal(path)
        except OSError as e:
            raise SpoolError("cannot read a pull journal", path=str(path), error=e.strerror) from e
        header = journal.header
        device_id = str(header["device_id"]) if header else path.name.split(".", 1)[0]
        if journal.custody is not None:
            record, pulled_at_ms = journal.custody
            spool.store_custody(record, device_id=device_id, pulled_at_ms=pulled_at_ms)
            kind, named = "completed", 0
        else:
            held = sorted({(seq, h) for seq, h in journal.announced
                           if spool.state_of(device_id, seq, h) in ("pending", "delivered", "rejected")})
            named, kind = len(held), "empty"
            if held and header is not None:
                try:
                    fsync_dir(spool.batches_dir)  # the renames of a cut publish, durable before a record names them
                except OSError as e:
                    raise SpoolError("cannot seal the spool", path=str(spool.batches_dir), error=e.strerror) from e
                usb = header["usb"]
                record = make_custody(
                    station_id=station_id, device_id=device_id, pulled_at_ms=int(header["started_at_ms"]),
                    manifest_sha256=bytes.fromhex(header["manifest_sha256"]), batches=held,
                    usb=UsbHints(usb["vendor_id"], usb["product_id"], usb["serial"]), station_key=signing_key,
                    recovered_at_ms=clock(),
                )
                pulled_at_ms = int(header["started_at_ms"])
                _append_custody(path, journal.whole, record, pulled_at_ms)
                spool.store_custody(record, device_id=device_id, pulled_at_ms=pulled_at_ms)
                kind = "recovery"
        try:
            path.unlink()
            fsync_dir(spool.pulls_dir)
        except OSError as e:
            raise SpoolError("cannot remove the pull journal", path=str(path), error=e.strerror) from e
        log.info("usb.custody.recovered", device_id=device_id, kind=kind, batches=named, journal=path.name)
        out.append(Recovered(device_id, kind, named, path.name))
    return out


def _append_custody(path: Path, whole: int, record: bytes, pulled_at_ms: int) -> None:
    """Cut a torn last line (so the new line parses), then append the recovery record's line."""
    try:
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.ftruncate(fd, whole)
            _append(fd, {"custody": base64.b64encode(record).decode("ascii"), "pulled_at_ms": pulled_at_ms})
        finally:
            os.close(fd)
    except OSError as e:
        raise SpoolError("cannot write the pull journal", path=str(path), error=e.strerror) from e
