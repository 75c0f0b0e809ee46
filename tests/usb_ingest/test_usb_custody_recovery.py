"""The pull journal and recovery custody records, in process on a real spool directory (ADR 0007).

The crash points themselves are exercised with real processes in
``tests/faults/test_faults_usb_custody_kill.py``; here the journal's file
rules: private modes, a torn last line, a crash during recovery itself.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from usb_ingest.errors import SpoolError
from usb_ingest.pull_journal import PullJournal, recover
from usb_ingest.spool import Spool
from wire import UsbHints, make_custody, parse_custody

STATION, DEVICE = "ST-01", "TAB-0001"
HINTS = UsbHints("04e8", "6860", "R58N")
KEY = SigningKey(hashlib.sha256(b"custody-recovery-test").digest())


def open_spool(tmp_path: Path) -> Spool:
    return Spool.open(tmp_path / "spool", tmp_path / "receipts.jsonl")


def journal(spool: Spool, started: int = 1_000) -> PullJournal:
    return PullJournal(spool, device_id=DEVICE, started_at_ms=started, manifest_sha256=b"\x07" * 32, usb=HINTS)


def publish(spool: Spool, seq: int) -> tuple[int, bytes]:
    envelope = f"envelope {seq}".encode()
    spool.store_batch(DEVICE, seq, envelope)
    return seq, hashlib.sha256(envelope).digest()


def records(spool: Spool) -> list[bytes]:
    return [spool.read(c) for c in spool.pending_custody()]


def test_a_journal_is_private_and_gone_once_the_record_is_stored(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    j = journal(spool)
    j.group([publish(spool, 1), publish(spool, 2)])
    assert stat.S_IMODE(j.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.pulls_dir.stat().st_mode) == 0o700
    record = make_custody(station_id=STATION, device_id=DEVICE, pulled_at_ms=2_000, manifest_sha256=b"\x07" * 32,
                          batches=[(1, hashlib.sha256(b"envelope 1").digest())], usb=HINTS, station_key=KEY)
    j.finish(record, pulled_at_ms=2_000)
    assert list(spool.pulls_dir.iterdir()) == [] and records(spool) == [record]
    assert recover(spool, station_id=STATION, signing_key=KEY, clock=lambda: 3_000) == []


def test_recovery_names_only_what_was_published_and_a_torn_line_never_happened(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    j = journal(spool)
    first = [publish(spool, 1), publish(spool, 2)]
    j.group(first)
    j.group([(3, hashlib.sha256(b"never published").digest())])  # announced, then the process died
    j.close()
    with j.path.open("ab") as f:
        f.write(b'{"group": [[4, "ab')  # a line the crash cut
    [done] = recover(open_spool(tmp_path), station_id=STATION, signing_key=KEY, clock=lambda: 5_000)
    assert (done.kind, done.batches, done.device_id) == ("recovery", 2, DEVICE)
    [raw] = records(spool)
    r = parse_custody(raw, bytes(KEY.verify_key))
    assert r.is_recovery and r.recovered_at_ms == 5_000
    assert (r.station_id, r.device_id, r.pulled_at_ms, r.manifest_sha256, r.usb) == (
        STATION, DEVICE, 1_000, b"\x07" * 32, HINTS)
    assert list(r.batches) == first
    assert list(spool.pulls_dir.iterdir()) == []


def test_a_journal_with_nothing_published_is_removed_without_a_record(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    j = journal(spool)
    j.group([(1, hashlib.sha256(b"staged only").digest())])
    j.close()
    [done] = recover(spool, station_id=STATION, signing_key=KEY, clock=lambda: 5_000)
    assert (done.kind, done.batches) == ("empty", 0)
    assert records(spool) == [] and list(spool.pulls_dir.iterdir()) == []


def test_a_crash_during_recovery_repeats_the_same_record_not_a_second_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(tmp_path)
    j = journal(spool)
    j.group([publish(spool, 1)])
    j.close()
    real_store = Spool.store_custody

    def cut(self: Spool, record: bytes, **kw: object) -> object:
        raise SpoolError("power lost while storing the recovery record")

    monkeypatch.setattr(Spool, "store_custody", cut)
    with pytest.raises(SpoolError):
        recover(spool, station_id=STATION, signing_key=KEY, clock=lambda: 5_000)
    assert j.path.exists() and records(spool) == []
    monkeypatch.setattr(Spool, "store_custody", real_store)
    [done] = recover(open_spool(tmp_path), station_id=STATION, signing_key=KEY, clock=lambda: 9_000)
    assert done.kind == "completed"  # the bytes the journal held, not a record signed at 9_000
    [raw] = records(spool)
    assert parse_custody(raw, bytes(KEY.verify_key)).recovered_at_ms == 5_000
    assert list(spool.pulls_dir.iterdir()) == []
