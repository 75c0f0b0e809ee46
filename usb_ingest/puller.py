"""One pull: read an export volume, verify everything against the registry, spool what holds, record custody.

Order (nothing untrusted reaches the spool unverified):

1. Trust: the registry snapshot must be valid (expired -> refused, nothing read).
2. Volume: open read-only in user space (``volume_fat``); limits checked.
3. Manifest: peek the claimed signer, which must be an enrolled tablet in
   service with that key; then verify the manifest under that key.
4. File set against the manifest: *missing*, *extra* (never read) and *size*
   differences are reported file by file.
5. Each listed batch, ascending seq: skipped without reading if the spool
   holds it or the receipt log shows it delivered (re-plug); else read once,
   SHA-256 and size against the manifest, envelope decoded and verified with
   the tablet key, header device and seq equal to the manifest's, then staged
   in the spool. Staged batches become durable a group at a time
   (``spool_group.SpoolGroup``: one filesystem flush, renames, one directory
   fsync); only then are they reported spooled (report, log, progress). A
   failure refuses that batch only: every batch carries its own signature, so
   the good ones are safe to take.
6. Custody: after the last group is sealed, a station-signed record of the
   manifest's batches the spool now holds, spooled too (also after an unplug
   mid-transfer: the group in progress is sealed first). Each group is
   announced in the pull's journal before it is published (``pull_journal``);
   the journal goes once the record is durable, and one left by a killed
   process becomes a recovery record when the station opens again.

USB identifiers are hints: a serial differing from the registered one is
logged, never decisive. Refusals that point at an attacker (unknown or
out-of-service tablet, wrong key, bad signatures, a seq reused with other
bytes) are logged as ``usb.security.event``.

Synchronous on purpose: the daemon runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import structlog
from nacl.signing import SigningKey

from wire import (
    VOLUME_LABEL,
    Limits,
    Manifest,
    ManifestEntry,
    UsbHints,
    decode_envelope,
    make_custody,
    parse_manifest,
    peek_manifest_signer,
    verify_envelope,
)
from wire.errors import WireError

from .config import VolumeLimits
from .errors import (
    BatchConflict,
    BatchInvalid,
    ContentRefused,
    DeviceGone,
    IngestError,
    ManifestInvalid,
    ManifestMismatch,
    SpoolError,
    TrustError,
    VolumeError,
)
from .pull_journal import PullJournal
from .spool import Spool, SpoolEntry
from .spool_group import SpoolGroup
from .trust import StationTrust
from .volume_fat import FatExportVolume

__all__ = ["Grouping", "Problem", "Progress", "PullReport", "StationIdentity", "pull"]

log = structlog.get_logger("usb_ingest.pull")

_SECURITY_CODES = {"unknown-tablet", "tablet-not-in-service", "key-mismatch", "manifest-invalid", "batch-invalid",
                   "batch-conflict"}


@dataclass(frozen=True, slots=True)
class StationIdentity:
    station_id: str
    signing_key: SigningKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class Grouping:
    """How many batches / bytes a durability group holds at most (``spool_group_batches``/``_bytes``)."""

    max_batches: int = 128
    max_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Problem:
    """One refusal, precise enough for the technician and the log (``kind`` for manifest mismatches)."""

    code: str
    message: str
    file: str | None = None
    seq: int | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    device_id: str | None
    batches_total: int
    batches_done: int
    bytes_total: int
    bytes_done: int
    institution: str | None = None  # of the worker the tablet is issued to (registry snapshot)


@dataclass(frozen=True, slots=True)
class PullReport:
    """``outcome``: complete | partial (some batches refused) | refused (nothing taken) |
    interrupted (unplugged or stopped; what was complete is kept)."""

    source: str
    outcome: str
    device_id: str | None = None
    manifest_batches: int = 0
    spooled: tuple[int, ...] = ()
    already_held: tuple[int, ...] = ()
    already_delivered: tuple[int, ...] = ()
    already_rejected: tuple[int, ...] = ()
    bytes_spooled: int = 0
    problems: tuple[Problem, ...] = ()
    extra: tuple[str, ...] = ()
    custody_spooled: bool = False
    institution: str | None = None

    @property
    def safe_to_unplug(self) -> bool:
        """Everything this pull could take is durably spooled (or nothing is to be taken)."""
        return self.outcome != "interrupted"


def _problem(err: IngestError, *, seq: int | None = None) -> Problem:
    file = err.facts.get("file")
    return Problem(code=err.code, message=err.message, file=str(file) if file is not None else None,
                   seq=seq, kind=getattr(err, "kind", None))


class _Pull:
    """The state of one pull; ``run`` is the whole procedure."""

    def __init__(self, source: str, *, trust: StationTrust, spool: Spool, station: StationIdentity,
                 hints: UsbHints, limits: VolumeLimits, on_progress: Callable[[Progress], None] | None,
                 should_stop: Callable[[], bool] | None, grouping: Grouping,
                 on_sealed: Callable[[int], None] | None = None) -> None:
        self.source = source
        self.trust = trust
        self.spool = spool
        self.station = station
        self.hints = hints
        self.limits = limits
        self.on_progress = on_progress or (lambda _p: None)
        self.should_stop = should_stop or (lambda: False)
        self.problems: list[Problem] = []
        self.spooled: list[int] = []
        self.held: list[int] = []
        self.delivered: list[int] = []
        self.rejected: list[int] = []
        self.bytes_spooled = 0
        self.manifest: Manifest | None = None
        self.grouping = grouping
        self.group: SpoolGroup | None = None
        self.journal: PullJournal | None = None
        self.institution: str | None = None
        self.on_sealed = on_sealed or (lambda _n: None)

    def refuse(self, err: IngestError, *, seq: int | None = None) -> None:
        problem = _problem(err, seq=seq)
        self.problems.append(problem)
        device_id = self.manifest.device_id if self.manifest else err.facts.get("device_id")
        fields = {"device_id": device_id, "seq": seq, "code": err.code, "file": problem.file, "kind": problem.kind}
        if err.code in _SECURITY_CODES or problem.kind == "hash":
            log.warning("usb.security.event", source=self.source, error=err.message, **fields)
        else:
            log.warning("usb.batch.refused" if seq is not None else "usb.volume.refused",
                        source=self.source, error=err.message, **fields)

    def report(self, outcome: str, extra: tuple[str, ...] = (), custody: bool = False) -> PullReport:
        m = self.manifest
        return PullReport(
            source=self.source, outcome=outcome, device_id=m.device_id if m else None,
            manifest_batches=len(m.batches) if m else 0, spooled=tuple(self.spooled), already_held=tuple(self.held),
            already_delivered=tuple(self.delivered), already_rejected=tuple(self.rejected),
            bytes_spooled=self.bytes_spooled, problems=tuple(self.problems), extra=extra, custody_spooled=custody,
            institution=self.institution,
        )

    def verify_manifest(self, volume: FatExportVolume) -> tuple[Manifest, bytes]:
        raw = volume.read_manifest()
        wire_limits = Limits(max_manifest_bytes=self.limits.max_manifest_bytes)
        try:
            device_id, signer = peek_manifest_signer(raw, wire_limits)
        except WireError as e:
            raise ManifestInvalid(f"manifest does not decode ({e.code})", file="MANIFEST.SQM") from e
        snapshot = self.trust.current()
        tablet = self.trust.tablet_for(snapshot, device_id, signer)
        self.institution = tablet.institution
        try:
            manifest = parse_manifest(raw, tablet.public_key, wire_limits)
        except WireError as e:
            raise ManifestInvalid(f"manifest refused ({e.code})", file="MANIFEST.SQM", device_id=device_id) from e
        if self.hints.serial and self.hints.serial != tablet.usb_serial:
            log.info("usb.hint.serial_mismatch", device_id=device_id, seen=self.hints.serial[:64],
                     registered=tablet.usb_serial)
        if manifest.usb_serial != tablet.usb_serial:
            log.info("usb.hint.manifest_serial_mismatch", device_id=device_id)
        log.info("usb.manifest.verified", device_id=device_id, batches=len(manifest.batches),
                 created_at_ms=manifest.created_at_ms)
        return manifest, tablet.public_key

    def check_file_set(self, volume: FatExportVolume, manifest: Manifest) -> list[ManifestEntry]:
        """The manifest entries worth reading; mismatches recorded as problems."""
        on_volume = dict(volume.listing.batches)
        listed = {e.file for e in manifest.batches}
        for name in sorted(set(on_volume) - listed):
            self.refuse(ManifestMismatch("file not in the manifest (not read)", kind="extra", file=name))
        readable = []
        for e in manifest.batches:
            if e.file not in on_volume:
                self.refuse(ManifestMismatch("listed in the manifest, absent", kind="missing", file=e.file), seq=e.seq)
            elif on_volume[e.file] != e.size:
                self.refuse(ManifestMismatch("size differs from the manifest", kind="size", file=e.file,
                                             size=on_volume[e.file], expected=e.size), seq=e.seq)
            else:
                readable.append(e)
        return readable

    def take_batch(self, volume: FatExportVolume, entry: ManifestEntry, tablet_key: bytes) -> None:
        assert self.manifest is not None
        device_id = self.manifest.device_id
        data = volume.read_batch(entry.file)
        if len(data) != entry.size or hashlib.sha256(data).digest() != entry.sha256:
            raise ManifestMismatch("bytes differ from the manifest's SHA-256", kind="hash", file=entry.file)
        try:
            envelope = decode_envelope(data)
            verify_envelope(envelope, tablet_key)
        except WireError as e:
            raise BatchInvalid(f"batch refused ({e.code})", file=entry.file) from e
        if envelope.header.device_id != device_id or envelope.header.seq != entry.seq:
            raise BatchInvalid("batch header names another device or seq than the manifest", file=entry.file)
        assert self.group is not None
        self.sealed(self.group.add(device_id, entry.seq, data))

    def sealed(self, entries: list[SpoolEntry]) -> None:
        """Report batches whose group is durable (never earlier); ``on_sealed`` lets the forwarder start on them
        while the pull goes on."""
        for e in entries:
            self.spooled.append(e.seq)
            self.bytes_spooled += e.size
            log.info("usb.batch.spooled", device_id=e.device_id, seq=e.seq, batch_hash=e.batch_hash.hex(),
                     bytes=e.size)
        if entries:
            self.on_sealed(len(entries))

    def run(self, source: str | os.PathLike[str] | BinaryIO) -> PullReport:
        try:
            self.trust.current()
            volume = FatExportVolume.open(source, self.limits)
        except (TrustError, VolumeError) as e:
            self.refuse(e)
            return self.report("refused")
        with volume:
            extra = volume.listing.extra
            if volume.listing.label != VOLUME_LABEL:
                log.info("usb.hint.label_mismatch", source=self.source, label=volume.listing.label)
            try:
                self.manifest, tablet_key = self.verify_manifest(volume)
            except (TrustError, VolumeError, ContentRefused) as e:
                self.refuse(e)
                return self.report("refused", extra)
            for name in extra:
                self.refuse(ManifestMismatch("not a protocol file (not read)", kind="extra", file=name))
            outcome = self.take_batches(volume, self.check_file_set(volume, self.manifest), tablet_key)
        custody = self.write_custody()
        if outcome == "complete" and self.problems:
            outcome = "partial"
        return self.report(outcome, extra, custody)

    def take_batches(self, volume: FatExportVolume, entries: list[ManifestEntry], tablet_key: bytes) -> str:
        assert self.manifest is not None
        todo: list[ManifestEntry] = []
        for e in entries:
            state = self.spool.state_of(self.manifest.device_id, e.seq, e.sha256)
            if state == "delivered":
                self.delivered.append(e.seq)
            elif state == "pending":
                self.held.append(e.seq)
            elif state == "rejected":
                self.rejected.append(e.seq)
            elif state == "conflict":
                self.refuse(BatchConflict("another batch with this seq was taken before", file=e.file), seq=e.seq)
            else:
                todo.append(e)
        self.on_progress(Progress(self.manifest.device_id, len(todo), 0, sum(e.size for e in todo), 0,
                                  self.institution))
        m = self.manifest
        self.journal = PullJournal(self.spool, device_id=m.device_id, started_at_ms=self.trust.clock(),
                                   manifest_sha256=hashlib.sha256(m.raw).digest(), usb=self.hints)
        if todo:
            self.journal.begin()  # no room for the journal (disk full): nothing is taken, SpoolError
        with SpoolGroup(self.spool, max_batches=self.grouping.max_batches, max_bytes=self.grouping.max_bytes,
                        before_publish=self.journal.group) as group:
            self.group = group
            try:
                outcome = self.take_staged(volume, todo, tablet_key)
            except SpoolError:
                with contextlib.suppress(SpoolError):  # what was staged before the failure is whole: keep it
                    self.sealed(group.commit())
                raise
            self.sealed(group.commit())  # the last group; also before reporting an unplug
        return outcome

    def take_staged(self, volume: FatExportVolume, todo: list[ManifestEntry], tablet_key: bytes) -> str:
        assert self.manifest is not None
        total_bytes = sum(e.size for e in todo)
        done_bytes = 0
        for n, e in enumerate(todo, 1):
            if self.should_stop():
                log.info("usb.pull.stopped", device_id=self.manifest.device_id, remaining=len(todo) - n + 1)
                return "interrupted"
            try:
                self.take_batch(volume, e, tablet_key)
            except DeviceGone as err:
                self.refuse(err, seq=e.seq)
                return "interrupted"
            except SpoolError:
                raise
            except (VolumeError, ContentRefused) as err:
                self.refuse(err, seq=e.seq)
            done_bytes += e.size
            self.on_progress(Progress(self.manifest.device_id, len(todo), n, total_bytes, done_bytes,
                                      self.institution))
        return "complete"

    def write_custody(self) -> bool:
        m = self.manifest
        if m is None:
            return False
        by_seq = {e.seq: e.sha256 for e in m.batches}
        # taken by this pull (pending, forwarded already while the pull went on, or refused by the gateway meanwhile:
        # a requeued batch must still be named)
        taken = {s for s in self.spooled
                 if self.spool.state_of(m.device_id, s, by_seq[s]) in ("pending", "delivered", "rejected")}
        held = {s for s in self.held if self.spool.state_of(m.device_id, s, by_seq[s]) == "pending"}
        batches = [(s, by_seq[s]) for s in sorted(taken | held)]
        now = self.trust.clock()
        record = None if not batches else make_custody(
            station_id=self.station.station_id, device_id=m.device_id, pulled_at_ms=now,
            manifest_sha256=hashlib.sha256(m.raw).digest(), batches=batches, usb=self.hints,
            station_key=self.station.signing_key,
        )
        journal, self.journal = self.journal, None
        if journal is None:  # no group was staged, so none announced
            if record is not None:
                self.spool.store_custody(record, device_id=m.device_id, pulled_at_ms=now)
        else:
            try:
                journal.finish(record, pulled_at_ms=now)
            except SpoolError:
                journal.close()  # kept: the next start signs a recovery record from it
                raise
        if record is None:
            return False
        log.info("usb.custody.spooled", device_id=m.device_id, batches=len(batches))
        return True


def pull(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    trust: StationTrust,
    spool: Spool,
    station: StationIdentity,
    limits: VolumeLimits,
    hints: UsbHints | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    grouping: Grouping | None = None,
    on_sealed: Callable[[int], None] | None = None,
) -> PullReport:
    """Pull one volume (a block device or image file, by path or open binary file). Raises only
    ``SpoolError`` (this machine's fault, e.g. disk full); every fault of the medium or its content is
    in the report."""
    shown = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<file>")
    job = _Pull(str(shown), trust=trust, spool=spool, station=station, hints=hints or UsbHints("", "", ""),
                limits=limits, on_progress=on_progress, should_stop=should_stop, grouping=grouping or Grouping(),
                on_sealed=on_sealed)
    log.info("usb.pull.started", source=job.source)
    try:
        report = job.run(source)
    except SpoolError:
        with contextlib.suppress(SpoolError):
            job.write_custody()  # for what was spooled before the failure
        raise
    log.info("usb.pull.finished", source=job.source, outcome=report.outcome, device_id=report.device_id,
             spooled=len(report.spooled), held=len(report.already_held), delivered=len(report.already_delivered),
             problems=len(report.problems), bytes=report.bytes_spooled)
    return report
